import type { Queue } from 'bullmq';
import type { Config, TableConfig } from '../config.js';
import type { ChangeSource, Destination, Source } from '../core/ports.js';
import type { TransformLoader } from '../core/transform.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { AppError } from '../core/errors.js';
import type { Keys, RedisClient } from './redis.js';

/** What the workers share in one process. Built by main.ts. */
export interface PipelineContext {
  config: Config;
  redis: RedisClient;
  keys: Keys;
  sources: Map<string, Source>;
  /** Change sources of the sources that have tables in mode cdc, by source name. */
  changeSources: Map<string, ChangeSource>;
  destination: Destination;
  metrics: Metrics;
  logger: Logger;
  extractQueue: Queue;
  pushQueue: Queue;
  /** Loads a table's transform module (cached). */
  transforms: TransformLoader;
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

export function findChangeSource(ctx: PipelineContext, name: string): ChangeSource {
  const s = ctx.changeSources.get(name);
  if (!s) throw new AppError('JOB_INVALID', `cdc job names source ${name}, which has no table in mode cdc`);
  return s;
}
