import { setTimeout as sleep } from 'node:timers/promises';
import { maskingKeyOf, type DebeziumSourceConfig } from '../config.js';
import { isAppError } from '../core/errors.js';
import type { EventStream, StreamEntry } from '../core/ports.js';
import type { PipelineContext } from './context.js';
import { DebeziumIngest } from './ingest.js';
import { replicaWait } from './redis.js';

const BLOCK_MS = 1000;
const RETRY_MS = 1000;
const STOP_GRACE_MS = 2000;
/** How long a read blocks while entries wait for earlier ones another consumer holds: the wait's poll interval. */
const WAIT_BLOCK_MS = 100;
/** Entries read and not yet stored, at most (they wait for earlier ones): beyond it nothing new is read. */
const MAX_HELD = 10_000;
/** How long entries wait for earlier ones before it is worth a warning. */
const WAIT_WARN_MS = 5000;

/** Redis stream entry ids (`<ms>-<seq>`) in stream order. */
export function compareEntryIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const ms = BigInt(am) - BigInt(bm);
  const d = ms !== 0n ? ms : BigInt(as) - BigInt(bs);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

export interface StreamIngest {
  stop(): Promise<void>;
}

/**
 * Reads a Debezium source's event stream into its ingest buffer. Invariants: an entry is acknowledged only after
 * its event is stored in the buffer (or, unreadable, stored as a dead letter); while the buffer is over its
 * budget or Redis is away, the same entries are offered again and nothing new is read. A process that dies leaves
 * its entries pending, and another consumer claims them. The entries of one stream are stored in its order, by
 * every consumer together: an entry waits while one before it is held by another consumer (until that one stores
 * it, or dies and it is claimed), since a Postgres table's snapshot floor is set by its snapshot rows and obeyed by
 * the changes streamed after them.
 */
export function startStreamIngest(ctx: PipelineContext, source: DebeziumSourceConfig, stream: EventStream): StreamIngest {
  const ingest = new DebeziumIngest(
    ctx.redis,
    ctx.config.redis.prefix,
    source,
    ctx.metrics,
    ctx.logger,
    replicaWait(ctx.config.redis),
    maskingKeyOf(ctx.config),
  );
  const log = ctx.logger.child({ source: source.name, stream: stream.description });
  let stopping = false;
  let prepared = false;

  const store = async (entries: StreamEntry[]): Promise<void> => {
    const events = entries.map((e) => ({ text: e.value, keyText: e.key, topic: e.stream }));
    let warned = false;
    for (;;) {
      try {
        await ingest.ingest(events, 'dead-letter', (i) => `entry ${entries[i]!.id} of ${entries[i]!.stream}`);
        return;
      } catch (err) {
        if (stopping) throw err;
        if (!warned)
          log.warn(
            { code: isAppError(err) ? err.code : 'INTERNAL', err: (err as Error).message },
            'stream entries not stored yet; reading paused, retrying',
          );
        warned = true;
        await sleep(isAppError(err) && err.retryAfterMs ? Math.min(err.retryAfterMs, 5000) : RETRY_MS);
      }
    }
  };

  // Entries read or claimed and not stored yet, per stream in stream order, and their ids.
  const held = new Map<string, { list: StreamEntry[]; ids: Set<string> }>();
  let heldCount = 0;
  // Per stream whose entries wait: since when, and whether that was said.
  const waiting = new Map<string, { since: number; said: boolean }>();
  const hold = (entries: readonly StreamEntry[]): void => {
    const grown = new Set<string>();
    for (const e of entries) {
      let h = held.get(e.stream);
      if (!h) held.set(e.stream, (h = { list: [], ids: new Set() }));
      // An entry waiting past claimIdle is claimed again, by this consumer too: it is held once.
      if (h.ids.has(e.id)) continue;
      h.ids.add(e.id);
      h.list.push(e);
      heldCount += 1;
      grown.add(e.stream);
    }
    // Claimed entries can come before those read earlier.
    for (const name of grown) held.get(name)!.list.sort((a, b) => compareEntryIds(a.id, b.id));
  };
  /**
   * Per stream, the held entries before the earliest one another consumer holds (all of them when it holds none),
   * taken out of `held`: what may be stored now, in stream order.
   */
  const storable = async (): Promise<StreamEntry[]> => {
    const ready: StreamEntry[] = [];
    for (const [name, h] of held) {
      const blocking = stream.heldElsewhere ? await stream.heldElsewhere(name, h.list[h.list.length - 1]!.id) : null;
      const after = blocking === null ? -1 : h.list.findIndex((e) => compareEntryIds(e.id, blocking) > 0);
      const count = after === -1 ? h.list.length : after;
      if (count === h.list.length) waiting.delete(name);
      else {
        const w = waiting.get(name) ?? { since: Date.now(), said: false };
        waiting.set(name, w);
        if (!w.said && Date.now() - w.since >= WAIT_WARN_MS) {
          w.said = true;
          log.warn(
            { stream: name, entries: h.list.length - count, waitingFor: blocking },
            `entries of ${name} wait for earlier ones another consumer holds (it stores them, or they are taken over after claimIdle if it died)`,
          );
        }
      }
      if (count === 0) continue;
      const out = h.list.splice(0, count);
      for (const e of out) {
        h.ids.delete(e.id);
        ready.push(e);
      }
      heldCount -= count;
      if (h.list.length === 0) held.delete(name);
    }
    return ready;
  };

  const loop = (async () => {
    while (!stopping) {
      try {
        if (!prepared) {
          await stream.prepare();
          prepared = true;
        }
        // At the bound nothing new is read, but claims go on: the entries waited for may be a dead consumer's.
        if (heldCount < MAX_HELD) hold(await stream.read(heldCount > 0 ? WAIT_BLOCK_MS : BLOCK_MS));
        else {
          hold(await stream.read(0, true));
          await sleep(WAIT_BLOCK_MS);
        }
        if (heldCount === 0) continue;
        const entries = await storable();
        if (entries.length === 0) continue;
        await store(entries);
        await stream.acknowledge(entries);
      } catch (err) {
        if (stopping) break;
        log.warn({ code: isAppError(err) ? err.code : 'INTERNAL', err: (err as Error).message }, 'reading the event stream failed; retrying');
        ctx.metrics.errors.inc({ source: source.name, table: 'ingest', code: isAppError(err) ? err.code : 'INTERNAL' });
        await sleep(RETRY_MS);
      }
    }
  })();

  return {
    stop: async () => {
      stopping = true;
      // A read or acknowledgement in flight may finish; one that waits on an unreachable Redis is ended by closing
      // the stream (what it had stored but not acknowledged is offered again: the same event ids).
      await Promise.race([loop, sleep(STOP_GRACE_MS)]);
      await stream.close();
      await loop;
    },
  };
}
