import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics. Counters and the latency histogram count what this process did; the gauges that describe
 * shared state (queue depths, sync lag) are computed from Redis at scrape time by whoever owns the registry, so
 * any process's /metrics shows the cluster-wide view for those.
 */
export interface Metrics {
  registry: Registry;
  rowsExtracted: Counter<'source' | 'table'>;
  rowsPushed: Counter<'source' | 'table'>;
  rowsRejected: Counter<'source' | 'table'>;
  batchesPushed: Counter<'source' | 'table'>;
  pushLatency: Histogram<'source' | 'table'>;
  errors: Counter<'source' | 'table' | 'code'>;
  syncLag: Gauge<'source' | 'table'>;
  pendingBatches: Gauge<'source' | 'table'>;
  queueJobs: Gauge<'queue' | 'state'>;
  slotLag: Gauge<'source' | 'slot'>;
  eventsIngested: Counter<'source' | 'table'>;
  eventsSkipped: Counter<'source' | 'reason'>;
  ingestBufferBytes: Gauge<'source'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pushsync_process_' });
  const labels = ['source', 'table'] as const;
  return {
    registry,
    rowsExtracted: new Counter({ name: 'rows_extracted', help: 'Rows read from the source and handed to push jobs', labelNames: labels, registers: [registry] }),
    rowsPushed: new Counter({ name: 'rows_pushed', help: 'Rows the destination accepted', labelNames: labels, registers: [registry] }),
    rowsRejected: new Counter({ name: 'rows_rejected', help: 'Rows the destination reported as rejected', labelNames: labels, registers: [registry] }),
    batchesPushed: new Counter({ name: 'batches_pushed', help: 'Requests the destination accepted', labelNames: labels, registers: [registry] }),
    pushLatency: new Histogram({
      name: 'push_latency_ms',
      help: 'Duration of one Stream API request in milliseconds',
      labelNames: labels,
      buckets: [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000],
      registers: [registry],
    }),
    errors: new Counter({ name: 'errors_total', help: 'Failed job attempts by error code', labelNames: ['source', 'table', 'code'], registers: [registry] }),
    syncLag: new Gauge({
      name: 'sync_lag_seconds',
      help: 'Age of the oldest row range not yet delivered, or, when all is delivered, time since the last read that reached the end of the table',
      labelNames: labels,
      registers: [registry],
    }),
    pendingBatches: new Gauge({ name: 'pending_batches', help: 'Push jobs enqueued and not yet delivered (includes the failed set)', labelNames: labels, registers: [registry] }),
    queueJobs: new Gauge({ name: 'queue_jobs', help: 'Jobs per queue and state', labelNames: ['queue', 'state'], registers: [registry] }),
    slotLag: new Gauge({ name: 'cdc_slot_lag_bytes', help: 'WAL bytes a replication slot holds back (current position minus confirmed)', labelNames: ['source', 'slot'], registers: [registry] }),
    eventsIngested: new Counter({ name: 'events_ingested', help: 'Change events accepted into the ingest buffer (Debezium sources)', labelNames: labels, registers: [registry] }),
    eventsSkipped: new Counter({ name: 'events_skipped', help: 'Change events received and skipped: tombstones, heartbeats, transaction markers, schema changes, truncates', labelNames: ['source', 'reason'], registers: [registry] }),
    ingestBufferBytes: new Gauge({ name: 'ingest_buffer_bytes', help: 'Bytes of undelivered change events held in Redis per Debezium source', labelNames: ['source'], registers: [registry] }),
  };
}
