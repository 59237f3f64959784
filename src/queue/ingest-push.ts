import type { Job } from 'bullmq';
import { deliverBuffered } from '../core/deliver-buffered.js';
import type { StreamLimits } from '../core/batching.js';
import { AppError } from '../core/errors.js';
import type { SendSummary } from '../core/sender.js';
import type { PipelineContext } from './context.js';
import { UNCONFIGURED_PREFIX, UNREADABLE_TABLE } from './ingest.js';
import { hasDebeziumRules } from '../core/debezium-rules.js';
import { IngestBuffer, ingestKeys } from './ingest-buffer.js';
import { findDebeziumSource } from './ingest-cutter.js';
import type { BufferPushJob } from './jobs.js';

export interface BufferedPushOptions {
  limits: StreamLimits;
  envelopeBytes: (target: string) => number;
  counted: (rows: number, latencyMs: number) => void;
}

/**
 * Delivers a range of a Debezium table's buffer, then removes it from Redis (returning its bytes to the budget).
 * Events of a table the config does not name, or that could not be read, fail the job: they wait in the
 * dead-letter queue, still buffered, until the table is configured and the job retried, or the job is purged.
 */
export async function pushBuffered(ctx: PipelineContext, job: Job, data: BufferPushJob, o: BufferedPushOptions): Promise<SendSummary> {
  const source = findDebeziumSource(ctx, data.source);
  const buffer = new IngestBuffer(ctx.redis, ingestKeys(ctx.config.redis.prefix, source.name));
  const { from, to } = data.buffer;
  if (data.table === UNREADABLE_TABLE) {
    const entries = await buffer.read(data.table, from, to, null, 5);
    const reasons = entries.map((e) => ('error' in e ? e.error : `entry ${e.id}`));
    throw new AppError('EVENT_INVALID', `${data.rows} event(s) of source ${source.name} could not be read: ${reasons.join('; ')}`);
  }
  const unconfigured = data.table.startsWith(UNCONFIGURED_PREFIX);
  const name = unconfigured ? data.table.slice(UNCONFIGURED_PREFIX.length) : data.table;
  const table = source.tables.find((t) => t.name === name);
  if (!table) {
    throw new AppError(
      'TABLE_NOT_CONFIGURED',
      `${data.rows} event(s) for table ${name} arrived on source ${source.name}, which does not configure it; they wait in Redis`,
    );
  }
  // Invariant: no event leaves without the columns and masks of its table. Events stored while the table was not
  // configured carry every column as it came, so a table configured since with rules does not send them.
  if (unconfigured && hasDebeziumRules(table)) {
    throw new AppError(
      'CONFIG_INVALID',
      `${data.rows} event(s) for table ${name} arrived on source ${source.name} before its config named it, so they were stored ` +
        `without the columns and masks it now sets and are not sent: purge the job (pushsync dlq purge) and snapshot the table again`,
    );
  }
  const result = await deliverBuffered({
    buffer: { read: (after, limit) => buffer.read(data.table, from, to, after, limit) },
    destination: ctx.destination,
    resumeAfter: data.resumeAfter ?? null,
    source: source.name,
    table: table.name,
    // The configured target, never the one in the payload.
    target: table.target,
    limits: o.limits,
    envelopeBytes: o.envelopeBytes(table.target),
    readRows: Math.min(o.limits.maxRows, 5000),
    onDelivered: async (after, rows, latencyMs) => {
      await job.updateData({ ...data, resumeAfter: after });
      o.counted(rows, latencyMs);
    },
  });
  // Invariant: events leave Redis only once the destination accepted every one of them.
  await buffer.release(data.table, from, to);
  return result;
}
