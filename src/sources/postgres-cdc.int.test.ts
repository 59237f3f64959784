import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { LOGICAL_PG_URL, uniqueName } from '../../test/helpers/services.js';
import type { ChangeStream, ChangeStreamEvent } from '../core/ports.js';
import { bigIntToLsn } from '../core/lsn.js';
import { PostgresCdc } from './postgres-cdc.js';

/**
 * The replication adapter against a real wal_level=logical cluster: what pushsync acknowledges is exactly what the
 * slot confirms, because PostgreSQL skips, on the next start, every transaction whose COMMIT record starts before
 * the confirmed position.
 */

/** A stream whose messages can be awaited in order. */
class Inbox {
  readonly messages: ChangeStreamEvent[] = [];
  error: Error | undefined;
  private waiters: Array<() => void> = [];

  push(m: ChangeStreamEvent): void {
    this.messages.push(m);
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits (bounded) for a message after index `from` that matches, and returns it with its index. */
  async next<T extends ChangeStreamEvent['kind']>(
    tag: T,
    from: number,
    timeoutMs = 10_000,
  ): Promise<{ m: Extract<ChangeStreamEvent, { kind: T }>; index: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.error) throw this.error;
      for (let i = from; i < this.messages.length; i++) {
        const m = this.messages[i]!;
        if (m.kind === tag) return { m: m as Extract<ChangeStreamEvent, { kind: T }>, index: i };
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${tag} message within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(Math.min(left, 200))]);
    }
  }
}

describe('replication slot acknowledgement', () => {
  const schema = uniqueName('ack');
  const slot = uniqueName('slot');
  let admin: pg.Client;
  let cdc: PostgresCdc;
  const streams: ChangeStream[] = [];

  async function open(): Promise<{ stream: ChangeStream; inbox: Inbox }> {
    const inbox = new Inbox();
    const stream = await cdc.open(
      new Map([[`${schema}.t`, { primaryKey: ['id'] }]]),
      (m) => inbox.push(m),
      (err) => {
        inbox.error = err;
      },
    );
    streams.push(stream);
    return { stream, inbox };
  }

  async function confirmedFlush(): Promise<string> {
    const { rows } = await admin.query<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [
      slot,
    ]);
    return rows[0]!.lsn;
  }

  /** Waits until the slot's confirmed position moves away from `previous` (the server applies status updates asynchronously). */
  async function confirmedAfter(previous: string): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const now = await confirmedFlush();
      if (now !== previous) return now;
      await sleep(50);
    }
    return confirmedFlush();
  }

  /** The COMMIT record's start, which the ordering of a transaction's changes carries. */
  const commitLsnOf = (e: Extract<ChangeStreamEvent, { kind: 'transaction' }>): string =>
    bigIntToLsn(BigInt(`0x${/^~([0-9a-f]{16}):/.exec(e.changes[0]!.ordering)![1]}`));

  /** Pings until an idle event reports the server's position as `expected` (the walsender has read everything). */
  async function keepaliveAt(stream: ChangeStream, inbox: Inbox, ackPosition: string, expected: () => Promise<string>): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const from = inbox.messages.length;
      await stream.requestPosition(ackPosition);
      const { m } = await inbox.next('idle', from);
      if (m.position === (await expected())) return m.position;
      await sleep(50);
    }
    throw new Error('the stream never reported the current WAL position');
  }

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.query(`CREATE TABLE ${schema}.t (id int PRIMARY KEY, v text)`);
    cdc = new PostgresCdc('app', LOGICAL_PG_URL, slot, slot);
    await cdc.prepare([{ schema, relname: 't' }]);
    await cdc.create();
  });

  afterEach(async () => {
    for (const s of streams.splice(0)) await s.stop().catch(() => {});
  });

  afterAll(async () => {
    await admin.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await admin.query(`DROP PUBLICATION IF EXISTS ${slot}`);
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
    await cdc.close();
  });

  it('confirms exactly the position acknowledged for a commit, a keepalive and a ping', async () => {
    const { stream, inbox } = await open();
    const before = await confirmedFlush();

    await admin.query(`INSERT INTO ${schema}.t VALUES (1, 'a')`);
    const { m: commit } = await inbox.next('transaction', 0);
    await stream.acknowledge(commit.end);
    expect(await confirmedAfter(before)).toBe(commit.end);

    // Non-transactional logical messages move the server's position without producing changes for pgoutput.
    await admin.query(`SELECT pg_logical_emit_message(false, 'pushsync-test', 'x')`);
    const walEnd = await keepaliveAt(
      stream,
      inbox,
      commit.end,
      async () => (await admin.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0]!.lsn,
    );
    await stream.acknowledge(walEnd);
    expect(await confirmedAfter(commit.end)).toBe(walEnd);

    await admin.query(`SELECT pg_logical_emit_message(false, 'pushsync-test', 'y')`);
    const pinged = await keepaliveAt(
      stream,
      inbox,
      walEnd,
      async () => (await admin.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0]!.lsn,
    );
    await stream.requestPosition(pinged);
    expect(await confirmedAfter(walEnd)).toBe(pinged);
    await stream.stop();
  });

  it('delivers, after a restart, a transaction whose COMMIT record starts exactly at the acknowledged keepalive position', async () => {
    const writer = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await writer.connect();
    try {
      let arranged = false;
      // Background WAL (a checkpoint, a standby snapshot) can land between the acknowledgement and the COMMIT; then the
      // COMMIT does not start at the acknowledged position and the attempt proves nothing, so it is made again.
      for (let attempt = 0; attempt < 5 && !arranged; attempt++) {
        const id = 100 + attempt;
        const first = await open();
        // A long transaction: its row is in the WAL (and decoded) before the stream goes idle.
        await writer.query('BEGIN');
        await writer.query(`INSERT INTO ${schema}.t VALUES ($1, 'late')`, [id]);
        // The walsender reads only flushed WAL: a committed transaction of its own (an xid, no rows) flushes it.
        await admin.query(`SELECT pg_current_xact_id()`);
        const insertLsn = async (): Promise<string> =>
          (await admin.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0]!.lsn;
        const idle = await keepaliveAt(first.stream, first.inbox, await confirmedFlush(), insertLsn);
        // Nothing is in flight: the reader acknowledges the idle keepalive's position, as pushsync's CDC reader does.
        await first.stream.acknowledge(idle);
        const previous = await confirmedFlush();
        if (previous !== idle) await confirmedAfter(previous);
        await writer.query('COMMIT');
        const { m: commit } = await first.inbox.next('transaction', 0);
        // The reader dies before it flushes: the commit is never acknowledged.
        await first.stream.stop();
        arranged = commitLsnOf(commit) === idle;

        const second = await open();
        await admin.query(`INSERT INTO ${schema}.t VALUES ($1, 'marker')`, [1000 + attempt]);
        // Changes arrive in commit order, so once the marker's commit is here the late transaction would be too.
        const hasKey = (e: ChangeStreamEvent, key: number): boolean => e.kind === 'transaction' && e.changes.some((c) => c.pk[0] === String(key));
        let markerAt = -1;
        for (let from = 0; markerAt < 0;) {
          const { m, index } = await second.inbox.next('transaction', from);
          if (hasKey(m, 1000 + attempt)) markerAt = index;
          from = index + 1;
        }
        const late = second.inbox.messages.slice(0, markerAt).filter((m) => hasKey(m, id));
        expect(late, `transaction committed at ${commitLsnOf(commit)} after acknowledging ${idle}`).toHaveLength(1);
        await second.stream.acknowledge((second.inbox.messages[markerAt] as Extract<ChangeStreamEvent, { kind: 'transaction' }>).end);
        await second.stream.stop();
      }
      expect(arranged, 'a COMMIT record starting exactly at the acknowledged position').toBe(true);
    } finally {
      await writer.query('ROLLBACK').catch(() => {});
      await writer.end();
    }
  });

  it('hands over a large transaction in parts before its end, in order, with only its end to acknowledge', async () => {
    const { stream, inbox } = await open();
    await admin.query(`INSERT INTO ${schema}.t SELECT g, 'bulk' FROM generate_series(10000, 12499) g`);
    const { m: commit, index } = await inbox.next('transaction', 0);
    const parts = inbox.messages.slice(0, index).filter((m): m is Extract<ChangeStreamEvent, { kind: 'changes' }> => m.kind === 'changes');
    expect(parts.map((p) => p.changes.length)).toEqual([1000, 1000]);
    const all = [...parts.flatMap((p) => p.changes), ...commit.changes];
    expect(all.map((c) => Number(c.pk[0]))).toEqual(Array.from({ length: 2500 }, (_, i) => 10000 + i));
    // One transaction: one commit position, positions 1 to 2500 in order.
    expect(new Set(all.map((c) => c.ordering.slice(0, 18))).size).toBe(1);
    expect(all.map((c) => c.ordering)).toEqual([...all.map((c) => c.ordering)].sort());
    await stream.acknowledge(commit.end);
    await stream.stop();
  });
});
