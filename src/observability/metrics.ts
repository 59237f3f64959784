import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';

/** Every metric's name starts with it, process and Node.js metrics included. */
export const METRIC_PREFIX = 'pushsync_';

/**
 * Prometheus metrics, named by Prometheus's conventions: one prefix, counters end in `_total`, durations are in
 * seconds. Counters and the duration histogram count what this process did; the gauges that describe shared state
 * (queue depths, sync lag, paused tables) are computed from Redis at scrape time by whoever owns the registry, so
 * any process's /metrics shows the cluster-wide view for those.
 */
export interface Metrics {
  registry: Registry;
  rowsExtracted: Counter<'source' | 'table'>;
  rowsPushed: Counter<'source' | 'table'>;
  rowsRejected: Counter<'source' | 'table'>;
  batchesPushed: Counter<'source' | 'table'>;
  /** Observed in seconds. */
  pushDuration: Histogram<'source' | 'table'>;
  errors: Counter<'source' | 'table' | 'code'>;
  syncLag: Gauge<'source' | 'table'>;
  pendingBatches: Gauge<'source' | 'table'>;
  queueJobs: Gauge<'queue' | 'state'>;
  slotLag: Gauge<'source' | 'slot'>;
  cdcLagSeconds: Gauge<'source' | 'slot'>;
  tablePaused: Gauge<'source' | 'table'>;
  eventsIngested: Counter<'source' | 'table'>;
  eventsSkipped: Counter<'source' | 'reason'>;
  ingestBufferBytes: Gauge<'source'>;
  /** Schema changes detected (and announced) per table and kind (`column_added`, `column_dropped`, …). */
  schemaChanges: Counter<'source' | 'table' | 'kind'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  keepEventLoopLagFinite(registry);
  const labels = ['source', 'table'] as const;
  const name = (n: string): string => `${METRIC_PREFIX}${n}`;
  return {
    registry,
    rowsExtracted: new Counter({
      name: name('rows_extracted_total'),
      help: 'Rows read from the source and handed to push jobs',
      labelNames: labels,
      registers: [registry],
    }),
    rowsPushed: new Counter({ name: name('rows_pushed_total'), help: 'Rows the destination accepted', labelNames: labels, registers: [registry] }),
    rowsRejected: new Counter({
      name: name('rows_rejected_total'),
      help: 'Rows the destination reported as rejected',
      labelNames: labels,
      registers: [registry],
    }),
    batchesPushed: new Counter({
      name: name('batches_pushed_total'),
      help: 'Requests the destination accepted',
      labelNames: labels,
      registers: [registry],
    }),
    pushDuration: new Histogram({
      name: name('push_duration_seconds'),
      help: 'Duration of one accepted Stream API request in seconds',
      labelNames: labels,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    errors: new Counter({
      name: name('errors_total'),
      help: 'Failed job attempts by error code',
      labelNames: ['source', 'table', 'code'],
      registers: [registry],
    }),
    syncLag: new Gauge({
      name: name('sync_lag_seconds'),
      help: 'Age of the oldest row range not yet delivered, or, when all is delivered, time since the last read that reached the end of the table',
      labelNames: labels,
      registers: [registry],
    }),
    pendingBatches: new Gauge({
      name: name('pending_batches'),
      help: 'Push jobs enqueued and not yet delivered (includes the failed set)',
      labelNames: labels,
      registers: [registry],
    }),
    queueJobs: new Gauge({ name: name('queue_jobs'), help: 'Jobs per queue and state', labelNames: ['queue', 'state'], registers: [registry] }),
    tablePaused: new Gauge({
      name: name('table_paused'),
      help: "1 while an operator has paused the table's extraction (pushsync pause), else 0",
      labelNames: labels,
      registers: [registry],
    }),
    slotLag: new Gauge({
      name: name('cdc_slot_lag_bytes'),
      help: 'WAL bytes a replication slot holds back, or binlog bytes past the confirmed position (MySQL); current position minus confirmed',
      labelNames: ['source', 'slot'],
      registers: [registry],
    }),
    cdcLagSeconds: new Gauge({
      name: name('cdc_lag_seconds'),
      help: 'Upper bound on the age of the oldest change past the confirmed position, in seconds (MySQL binlog sources)',
      labelNames: ['source', 'slot'],
      registers: [registry],
    }),
    eventsIngested: new Counter({
      name: name('events_ingested_total'),
      help: 'Change events accepted into the ingest buffer (Debezium sources)',
      labelNames: labels,
      registers: [registry],
    }),
    eventsSkipped: new Counter({
      name: name('events_skipped_total'),
      help: 'Change events received and skipped: tombstones, heartbeats, transaction markers, schema changes, truncates',
      labelNames: ['source', 'reason'],
      registers: [registry],
    }),
    ingestBufferBytes: new Gauge({
      name: name('ingest_buffer_bytes'),
      help: 'Bytes of undelivered change events held in Redis per Debezium source',
      labelNames: ['source'],
      registers: [registry],
    }),
    schemaChanges: new Counter({
      name: name('schema_changes_total'),
      help: 'Schema changes detected and announced: a column added, dropped or retyped, a table re-created',
      labelNames: ['source', 'table', 'kind'],
      registers: [registry],
    }),
  };
}

/**
 * Every configured table's counters and histogram start at 0, so a rate or a ratio over them has series from the
 * first scrape (a labelled metric never incremented has none, and a dashboard panel over it would stay empty).
 */
export function initialiseTableSeries(metrics: Metrics, tables: ReadonlyArray<{ source: string; name: string }>): void {
  for (const t of tables) {
    const labels = { source: t.source, table: t.name };
    for (const counter of [metrics.rowsExtracted, metrics.rowsPushed, metrics.rowsRejected, metrics.batchesPushed]) counter.inc(labels, 0);
    metrics.pushDuration.zero(labels);
  }
}

/**
 * prom-client reads Node's event-loop delay histogram at each scrape and resets it. With no sample since the last
 * scrape (two scrapes close together, or the first one right after start), the histogram's min is its initial
 * 2^63-1 ns (9223372036.85 s) and its mean and deviation NaN. Such a value is replaced by the gauge's previous one
 * (0 before the first sample), so dashboards and alerts never see an overflow or NaN.
 */
function keepEventLoopLagFinite(registry: Registry): void {
  /** No event loop lags for 31 years: a larger value is the histogram's empty state. */
  const EMPTY_ABOVE_SECONDS = 1e9;
  for (const stat of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
    const gauge = registry.getSingleMetric(`${METRIC_PREFIX}nodejs_eventloop_lag_${stat}_seconds`) as Gauge | undefined;
    if (!gauge) continue;
    const set = gauge.set.bind(gauge) as (labels: LabelValues<string>, value: number) => void;
    let last = 0;
    // prom-client sets these (with its label object) from one collect; nothing else does.
    gauge.set = ((labels: LabelValues<string>, value: number) => {
      if (Number.isFinite(value) && value <= EMPTY_ABOVE_SECONDS) last = value;
      set(labels, last);
    }) as Gauge['set'];
  }
}
