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

/** Tables by source and name, per configuration: every extract run looks its table up (500 tables, every 30 s). */
const tableIndex = new WeakMap<Config, Map<string, Map<string, TableConfig>>>();

export function findTable(config: Config, source: string, table: string): TableConfig {
  let index = tableIndex.get(config);
  if (!index) {
    index = new Map(config.sources.map((s) => [s.name, new Map(s.tables.map((t) => [t.name, t]))]));
    tableIndex.set(config, index);
  }
  const t = index.get(source)?.get(table);
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
