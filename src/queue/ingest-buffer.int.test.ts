import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { IngestBuffer, ingestKeys, type NewEntry } from './ingest-buffer.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

const entry = (table: string, id: number, extra: Partial<NewEntry> = {}): NewEntry => ({
  table,
  op: 'update',
  ordering: `~${id.toString(16).padStart(16, '0')}:${id.toString(16).padStart(16, '0')}`,
  identity: `lsn:${id}`,
  row: `{"_unavailable":[],"id":"${id}"}`,
  key: `["${id}"]`,
  ...extra,
});

/** Bytes an entry counts against the budget: its stored field values. */
const size = (e: NewEntry): number =>
  'error' in e ? e.error.length : e.op.length + e.ordering.length + e.identity.length + e.row.length + e.key.length;

describe('IngestBuffer group commit', () => {
  let redis: Redis;
  let prefix: string;
  let buffer: IngestBuffer;

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('ibuf');
    buffer = new IngestBuffer(redis, ingestKeys(prefix, 'src'));
  });
  afterEach(async () => {
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  const stored = async (table: string): Promise<string[]> =>
    (await buffer.read(table, '-', '+', null, 1000)).map((e) => ('error' in e ? e.error : e.identity));

  it('commits concurrent appends in one script call, each all or nothing against the budget', async () => {
    const first = [entry('a', 1), entry('a', 2)];
    const budget = first.reduce((n, e) => n + size(e), 0) + size(entry('b', 3)) * 2;
    const commands: string[] = [];
    const counted = redis.duplicate();
    await counted.ping();
    const sendCommand = counted.sendCommand.bind(counted);
    counted.sendCommand = (cmd) => {
      commands.push(cmd.name);
      return sendCommand(cmd);
    };
    const grouped = new IngestBuffer(counted, ingestKeys(prefix, 'src'));
    // The first append goes at once; the next three wait for it and then travel together.
    const results = await Promise.all([
      grouped.append(first, budget, new Map()),
      grouped.append([entry('b', 3)], budget, new Map([['b', ['id']]])),
      grouped.append([entry('b', 4), entry('a', 5), entry('b', 6)], budget, new Map()),
      grouped.append([entry('b', 7)], budget, new Map()),
    ]);
    await counted.quit();
    expect(results.map((r) => r.stored)).toEqual([true, true, false, true]);
    expect(commands.filter((c) => c === 'evalsha').length).toBe(2);
    // The refused request left nothing behind, the others are stored whole and in order.
    expect(await stored('a')).toEqual(['lsn:1', 'lsn:2']);
    expect(await stored('b')).toEqual(['lsn:3', 'lsn:7']);
    expect(await buffer.bytes()).toBe([entry('a', 1), entry('a', 2), entry('b', 3), entry('b', 7)].reduce((n, e) => n + size(e), 0));
    expect(await buffer.eventKey('b')).toEqual(['id']);
    expect((await buffer.tables()).sort()).toEqual(['a', 'b']);
  });

  it('a snapshot row raises the floor for streamed changes of its table, also when they come in a later request of the group', async () => {
    const snapshot = entry('t', 0x5000, { op: 'snapshot', ordering: `~${'5000'.padStart(16, '0')}`, floor: 'sets' });
    const results = await Promise.all([
      buffer.append([entry('other', 1)], 1e9, new Map()),
      buffer.append([snapshot], 1e9, new Map()),
      buffer.append([entry('t', 0x4000, { floor: 'obeys' }), entry('u', 0x4000, { floor: 'obeys' })], 1e9, new Map()),
    ]);
    expect(results.every((r) => r.stored)).toBe(true);
    const orderings = async (table: string): Promise<string[]> =>
      (await buffer.read(table, '-', '+', null, 10)).map((e) => ('error' in e ? '' : e.ordering));
    expect(await orderings('t')).toEqual([`~${'5000'.padStart(16, '0')}`, `~${'5000'.padStart(16, '0')}:${'4000'.padStart(16, '0')}`]);
    // Another table has no floor: its change keeps its ordering.
    expect(await orderings('u')).toEqual([`~${'4000'.padStart(16, '0')}:${'4000'.padStart(16, '0')}`]);
    // A lower snapshot later does not lower the floor.
    await buffer.append([entry('t', 0x100, { op: 'snapshot', ordering: `~${'100'.padStart(16, '0')}`, floor: 'sets' })], 1e9, new Map());
    await buffer.append([entry('t', 0x200, { floor: 'obeys' })], 1e9, new Map());
    expect((await orderings('t'))[3]).toBe(`~${'5000'.padStart(16, '0')}:${'200'.padStart(16, '0')}`);
  });
});
