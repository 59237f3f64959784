import { createHash } from 'node:crypto';
import type { RedisClient } from './redis.js';
import type { BufferedEntry } from '../core/deliver-buffered.js';
import type { SnapshotFloor } from '../core/debezium-ordering.js';
import type { Operation } from '../core/record.js';

/**
 * Where ingested change events wait until they are delivered: one Redis stream per table of a Debezium source,
 * bounded by the source's byte budget. This is the one place pushsync keeps customer rows in Redis: the rows
 * arrive inside the events, and nothing else could re-read them.
 *
 * Invariants:
 * - An append is one Lua script: every event of a request is stored, or none is (all or nothing), and only if the
 *   buffer is within its budget.
 * - Entries are removed (and their bytes returned to the budget) only after the push job carrying them delivered
 *   them, by one Lua script that counts what it deletes, so removing twice frees nothing twice.
 * - The bytes of an entry are the bytes of its field values; append and release count them the same way.
 */
export interface IngestKeys {
  /** Bytes of every entry still buffered for the source. */
  bytes: string;
  /** Tables that have a buffer (configured or not). */
  tables: string;
  /** Per table: the key columns seen in event keys (for `pushsync views` when the config names none). */
  eventKeys: string;
  /** Per table: the snapshot floor of Postgres tables, 16 hex digits (core/debezium-ordering.ts). */
  snapshotFloors: string;
  buffer(table: string): string;
  /** Per table: where cutting into push jobs stands (`after`) and a cut being made (`intent*`). */
  cut(table: string): string;
}

export function ingestKeys(prefix: string, source: string): IngestKeys {
  const base = `${prefix}:ingest:${source}`;
  return {
    bytes: `${base}:bytes`,
    tables: `${base}:tables`,
    eventKeys: `${base}:event-keys`,
    snapshotFloors: `${base}:snapshot-floor`,
    buffer: (table) => `${base}:buf:${table}`,
    cut: (table) => `${base}:cut:${table}`,
  };
}

/** One event ready to be buffered: a record row, or the reason it cannot become one (it goes to the dead-letter queue). */
export type NewEntry =
  | { table: string; op: Operation; ordering: string; identity: string; row: string; key: string; floor?: SnapshotFloor }
  | { table: string; error: string };

// Appends the requests of one group commit, each all or nothing. KEYS: bytes, tables, eventKeys, snapshot floors,
// then one buffer stream per table of the group. ARGV: budget, table count, the table names, the key columns per table
// ('' when unknown), request count, then per request: entry count, then per entry: table index (1-based), op,
// ordering, identity, row, key, error, floor ('s' sets the table's floor, 'o' obeys it, '' neither). Returns per
// request 1 (stored) or 0 (refused: over the budget), then the bytes buffered after the last request.
// The floor rule is raiseToFloor (core/debezium-ordering.ts); entries are taken in order, so a streamed change after
// a snapshot row in the same request (or an earlier one of the group) obeys the floor that row set.
const APPEND = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local budget = tonumber(ARGV[1])
local tables = tonumber(ARGV[2])
local requests = tonumber(ARGV[3 + 2 * tables])
local a = 4 + 2 * tables
local names = {'op', 'o', 'i', 'r', 'k', 'e'}
local floors = {}
local touched = {}
local out = {}
local added = 0
for q = 1, requests do
  local n = tonumber(ARGV[a])
  local first = a + 1
  a = first + 8 * n
  local total = 0
  for j = 0, n - 1 do
    local e = first + j * 8
    for k = 1, 6 do total = total + #ARGV[e + k] end
  end
  if used > 0 and used + total > budget then
    out[q] = 0
  else
    out[q] = 1
    for j = 0, n - 1 do
      local e = first + j * 8
      local t = tonumber(ARGV[e])
      local mode = ARGV[e + 7]
      if mode ~= '' and floors[t] == nil then floors[t] = redis.call('HGET', KEYS[4], ARGV[2 + t]) or '' end
      if mode == 's' then
        local f = string.sub(ARGV[e + 2], 2, 17)
        if f > floors[t] then
          floors[t] = f
          redis.call('HSET', KEYS[4], ARGV[2 + t], f)
        end
      elseif mode == 'o' and string.sub(ARGV[e + 2], 2, 17) < floors[t] then
        ARGV[e + 2] = '~' .. floors[t] .. string.sub(ARGV[e + 2], 18)
      end
      local fields = {}
      for k = 1, 6 do
        if #ARGV[e + k] > 0 then
          fields[#fields + 1] = names[k]
          fields[#fields + 1] = ARGV[e + k]
        end
      end
      redis.call('XADD', KEYS[4 + t], '*', unpack(fields))
      touched[t] = true
    end
    used = used + total
    added = added + total
  end
end
for t = 1, tables do
  if touched[t] then
    redis.call('SADD', KEYS[2], ARGV[2 + t])
    local cols = ARGV[2 + tables + t]
    if #cols > 0 then redis.call('HSETNX', KEYS[3], ARGV[2 + t], cols) end
  end
end
if added > 0 then redis.call('INCRBY', KEYS[1], added) end
out[requests + 1] = used
return out
`;

// KEYS: buffer, bytes. ARGV: first id, last id. Deletes the entries of the range and returns the bytes they held.
const RELEASE = `
local freed = 0
local from = ARGV[1]
while true do
  local entries = redis.call('XRANGE', KEYS[1], from, ARGV[2], 'COUNT', 1000)
  for _, e in ipairs(entries) do
    local f = e[2]
    for k = 2, #f, 2 do freed = freed + #f[k] end
    redis.call('XDEL', KEYS[1], e[1])
  end
  if #entries < 1000 then break end
  from = '(' .. entries[#entries][1]
end
if freed > 0 then redis.call('DECRBY', KEYS[2], freed) end
return freed
`;

// KEYS: buffer, cut state. ARGV: batch rows, flush interval ms, flush all ('1': cut what is there now).
// Returns {'intent', from, to, rows} for a cut to enqueue (a new one, or one a crash left unfinished), or {'wait'}.
const CUT = `
local st = redis.call('HMGET', KEYS[2], 'after', 'intentFrom', 'intentTo', 'intentRows')
if st[3] then return {'intent', st[2], st[3], st[4]} end
local start = '-'
if st[1] then start = '(' .. st[1] end
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[1]))
if #entries == 0 then return {'empty'} end
local first = entries[1][1]
local last = entries[#entries][1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local born = tonumber(string.match(first, '^(%d+)'))
if ARGV[3] ~= '1' and #entries < tonumber(ARGV[1]) and now - born < tonumber(ARGV[2]) then return {'wait'} end
redis.call('HSET', KEYS[2], 'intentFrom', first, 'intentTo', last, 'intentRows', #entries)
return {'intent', first, last, tostring(#entries)}
`;

const COMMIT_CUT = `
if redis.call('HGET', KEYS[1], 'intentTo') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'after', ARGV[1])
  redis.call('HDEL', KEYS[1], 'intentFrom', 'intentTo', 'intentRows')
  return 1
end
return 0
`;

const FLOOR_ARG: Record<SnapshotFloor | 'none', string> = { sets: 's', obeys: 'o', none: '' };

const SHA = new Map<string, string>();

/** EVALSHA, loading the script on a NOSCRIPT (a restarted Redis, a failover): a request does not resend the script. */
async function run(redis: RedisClient, script: string, keys: readonly string[], args: readonly string[]): Promise<unknown> {
  let sha = SHA.get(script);
  if (sha === undefined) SHA.set(script, (sha = createHash('sha1').update(script).digest('hex')));
  try {
    return await redis.evalsha(sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
    return redis.eval(script, keys.length, ...keys, ...args);
  }
}

interface PendingAppend {
  entries: readonly NewEntry[];
  eventKeys: ReadonlyMap<string, string[]>;
  resolve: (r: AppendResult) => void;
  reject: (err: unknown) => void;
}

/** Entries of one group commit at most: bounds the script's arguments (and how long it holds Redis). */
const GROUP_MAX_ENTRIES = 5000;

export interface AppendResult {
  stored: boolean;
  /** Bytes buffered after the append (or before it, when refused). */
  bytes: number;
}

export class IngestBuffer {
  constructor(
    private readonly redis: RedisClient,
    readonly keys: IngestKeys,
  ) {}

  /**
   * Stores every entry, or none when the buffer is over `budget` bytes. `eventKeys` names key columns per table.
   * Appends made while one is on its way to Redis wait and then go together in one script call (a group commit):
   * each keeps its own all-or-nothing verdict, and each resolves only once Redis answered for it.
   */
  append(entries: readonly NewEntry[], budget: number, eventKeys: ReadonlyMap<string, string[]>): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ entries, eventKeys, resolve, reject });
      if (!this.committing) void this.commitWaiting(budget);
    });
  }

  private waiting: PendingAppend[] = [];
  private committing = false;

  private async commitWaiting(budget: number): Promise<void> {
    this.committing = true;
    try {
      while (this.waiting.length > 0) {
        let take = 0;
        let entries = 0;
        while (take < this.waiting.length && (take === 0 || entries + this.waiting[take]!.entries.length <= GROUP_MAX_ENTRIES)) {
          entries += this.waiting[take]!.entries.length;
          take++;
        }
        const group = this.waiting.splice(0, take);
        try {
          const results = await this.appendGroup(group, budget);
          group.forEach((g, i) => g.resolve(results[i]!));
        } catch (err) {
          for (const g of group) g.reject(err);
        }
      }
    } finally {
      this.committing = false;
    }
  }

  private async appendGroup(group: readonly PendingAppend[], budget: number): Promise<AppendResult[]> {
    const index = new Map<string, number>();
    const tables: string[] = [];
    const columns = new Map<string, string[]>();
    for (const g of group) {
      for (const e of g.entries) {
        if (!index.has(e.table)) index.set(e.table, tables.push(e.table));
      }
      for (const [t, cols] of g.eventKeys) if (!columns.has(t)) columns.set(t, cols);
    }
    const args: string[] = [String(budget), String(tables.length), ...tables];
    for (const t of tables) args.push(columns.has(t) ? JSON.stringify(columns.get(t)) : '');
    args.push(String(group.length));
    for (const g of group) {
      args.push(String(g.entries.length));
      for (const e of g.entries) {
        if ('error' in e) args.push(String(index.get(e.table)), '', '', '', '', '', e.error, '');
        else args.push(String(index.get(e.table)), e.op, e.ordering, e.identity, e.row, e.key, '', FLOOR_ARG[e.floor ?? 'none']);
      }
    }
    const keys = [this.keys.bytes, this.keys.tables, this.keys.eventKeys, this.keys.snapshotFloors, ...tables.map((t) => this.keys.buffer(t))];
    const reply = (await run(this.redis, APPEND, keys, args)) as number[];
    // Each request learns whether it was stored; the bytes are those after the whole group.
    const bytes = Number(reply[group.length]);
    return group.map((_, i) => ({ stored: reply[i] === 1, bytes }));
  }

  async bytes(): Promise<number> {
    return Number((await this.redis.get(this.keys.bytes)) ?? 0);
  }

  async tables(): Promise<string[]> {
    return this.redis.smembers(this.keys.tables);
  }

  /** Key columns seen in the events of a table, when they came with keys. */
  async eventKey(table: string): Promise<string[] | undefined> {
    const v = await this.redis.hget(this.keys.eventKeys, table);
    return v ? (JSON.parse(v) as string[]) : undefined;
  }

  /** Entries of `[from, to]` after `after` (exclusive; null: from `from` on), at most `limit`. */
  async read(table: string, from: string, to: string, after: string | null, limit: number): Promise<BufferedEntry[]> {
    const rows = (await this.redis.xrange(this.keys.buffer(table), after === null ? from : `(${after}`, to, 'COUNT', limit)) as Array<
      [string, string[]]
    >;
    return rows.map(([id, fields]) => {
      const f: Record<string, string> = {};
      for (let k = 0; k + 1 < fields.length; k += 2) f[fields[k]!] = fields[k + 1]!;
      if (f.e !== undefined) return { id, error: f.e };
      return { id, op: f.op as Operation, ordering: f.o!, identity: f.i!, row: f.r!, key: f.k ?? '[]' };
    });
  }

  /** Deletes the delivered entries of `[from, to]`; returns the bytes freed. */
  async release(table: string, from: string, to: string): Promise<number> {
    return Number(await run(this.redis, RELEASE, [this.keys.buffer(table), this.keys.bytes], [from, to]));
  }

  /** The next range of a table to enqueue as a push job, or why there is none. */
  async nextCut(
    table: string,
    batchRows: number,
    flushIntervalMs: number,
    flushAll: boolean,
  ): Promise<{ from: string; to: string; rows: number } | 'wait' | 'empty'> {
    const keys = [this.keys.buffer(table), this.keys.cut(table)];
    const r = (await run(this.redis, CUT, keys, [String(batchRows), String(flushIntervalMs), flushAll ? '1' : '0'])) as string[];
    if (r[0] !== 'intent') return r[0] as 'wait' | 'empty';
    return { from: r[1]!, to: r[2]!, rows: Number(r[3]) };
  }

  /** Records that the cut ending at `to` is enqueued: the next cut starts after it. */
  async commitCut(table: string, to: string): Promise<void> {
    await run(this.redis, COMMIT_CUT, [this.keys.cut(table)], [to]);
  }
}
