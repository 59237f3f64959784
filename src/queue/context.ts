import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config, TableConfig } from '../config.js';
import type { Destination, Source } from '../core/ports.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { AppError } from '../core/errors.js';
import type { Keys } from './redis.js';

/** What the workers share in one process. Built by main.ts. */
export interface PipelineContext {
  config: Config;
  redis: Redis;
  keys: Keys;
  sources: Map<string, Source>;
  destination: Destination;
  metrics: Metrics;
  logger: Logger;
  extractQueue: Queue;
  pushQueue: Queue;
}

export function findTable(config: Config, source: string, table: string): TableConfig {
  const t = config.sources.find((s) => s.name === source)?.tables.find((x) => x.name === table);
  if (!t) throw new AppError('JOB_INVALID', `job names ${source}.${table}, which is not in the configuration`);
  return t;
}

export function findSource(ctx: PipelineContext, name: string): Source {
  const s = ctx.sources.get(name);
  if (!s) throw new AppError('JOB_INVALID', `job names source ${name}, which is not in the configuration`);
  return s;
}
