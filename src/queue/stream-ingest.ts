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

export interface StreamIngest {
  stop(): Promise<void>;
}

/**
 * Reads a Debezium source's event stream into its ingest buffer. Invariant: an entry is acknowledged only after
 * its event is stored in the buffer (or, unreadable, stored as a dead letter); while the buffer is over its
 * budget or Redis is away, the same entries are offered again and nothing new is read. A process that dies leaves
 * its entries pending, and another consumer claims them.
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

  const loop = (async () => {
    while (!stopping) {
      try {
        if (!prepared) {
          await stream.prepare();
          prepared = true;
        }
        const entries = await stream.read(BLOCK_MS);
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
