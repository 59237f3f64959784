import { connectionEpoch, waitForReplicas, type RedisClient, type ReplicaWait } from './redis.js';
import type { DebeziumSourceConfig, TableConfig } from '../config.js';
import { changeRow, mapDebeziumEvent, type DebeziumInput, type MappingOptions, type SkipReason } from '../core/debezium.js';
import { UnavailableValue } from '../core/debezium-values.js';
import { DebeziumRules } from '../core/debezium-rules.js';
import { ReusedValues, parseLossless } from '../core/json-lossless.js';
import { AppError, isAppError } from '../core/errors.js';
import { parseQualifiedName } from '../core/identifiers.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { IngestBuffer, ingestKeys, type NewEntry } from './ingest-buffer.js';

/** The buffer of events that could not be read at all (no table to file them under): they go to the dead-letter queue. */
export const UNREADABLE_TABLE = '(unreadable events)';

/**
 * Events of a table the config does not name are buffered under this prefix and the event's table name. They are
 * stored as they came, with no columns or masks applied: should the table be configured with some later, they are
 * not sent (ingest-push.ts), and the mark keeps them apart from the events stored under the table's rules.
 */
export const UNCONFIGURED_PREFIX = '(unconfigured) ';

/** How long an append may wait for Redis before the producer is told to retry (503). */
const APPEND_TIMEOUT_MS = 10_000;

/** An event as text (a stream entry): parsed with the others, so a value that is not JSON is that event's failure. */
export interface RawEvent {
  text: string | null;
  keyText: string | null;
  topic: string;
}

function parsed(e: DebeziumInput | RawEvent, reuse: ReusedValues): DebeziumInput {
  if (!('text' in e)) return e;
  let key: DebeziumInput['key'];
  try {
    key = e.keyText === null ? undefined : parseLossless(e.keyText);
  } catch {
    key = undefined; // a key that is not JSON (a plain string key) names no columns
  }
  return { value: e.text === null ? null : parseLossless(e.text, reuse), key, topic: e.topic };
}

export interface IngestOutcome {
  accepted: number;
  skipped: Partial<Record<SkipReason | 'truncate', number>>;
}

/**
 * What a malformed event does: `reject` refuses the whole request (HTTP: 400, nothing stored); `dead-letter` stores
 * the event's reason in its place, so it reaches the dead-letter queue (a stream entry cannot be refused).
 */
export type InvalidPolicy = 'reject' | 'dead-letter';

interface TableMatcher {
  config: TableConfig;
  /** The table's columns and masks; null when it has none. */
  rules: DebeziumRules | null;
  schema: { text: string; quoted: boolean } | undefined;
  table: { text: string; quoted: boolean };
}

const same = (part: { text: string; quoted: boolean }, name: string): boolean =>
  part.quoted ? part.text === name : part.text.toLowerCase() === name.toLowerCase();

/**
 * Accepts change events of one Debezium source into its buffer: maps each event (core/debezium.ts), files it under
 * its configured table (or under the table it names, for the dead-letter queue), and appends all of them in one
 * atomic step. Resolves only once every event is stored in Redis.
 */
export class DebeziumIngest {
  readonly buffer: IngestBuffer;
  /** Events of a table repeat the same schema text: parsed once (core/json-lossless.ts). */
  readonly reuse = new ReusedValues('schema');
  private readonly mapping: MappingOptions;
  private readonly matchers: TableMatcher[];

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    readonly source: DebeziumSourceConfig,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** Replicas that must hold the events before the producer is told they are stored. @defaultValue none */
    private readonly replicas: ReplicaWait = { replicas: 0, timeoutMs: 0 },
    /** `masking.key` as bytes, for hash masks. @defaultValue none */
    maskingKey: Buffer | null = null,
  ) {
    this.buffer = new IngestBuffer(redis, ingestKeys(prefix, source.name));
    this.mapping = { binaryHandling: source.binaryHandling, unavailable: new UnavailableValue(source.unavailableValue) };
    this.matchers = source.tables.map((config) => {
      const parts = parseQualifiedName(config.name);
      return {
        config,
        rules: DebeziumRules.of(config, maskingKey),
        schema: parts.length === 2 ? parts[0] : undefined,
        table: parts[parts.length - 1]!,
      };
    });
  }

  /** The configured table an event's `schema.table` (`db.table`) names: unquoted names match in any case. */
  tableFor(eventTable: string): TableConfig | undefined {
    return this.matcherFor(eventTable)?.config;
  }

  private matcherFor(eventTable: string): TableMatcher | undefined {
    const dot = eventTable.indexOf('.');
    const schema = dot === -1 ? undefined : eventTable.slice(0, dot);
    const table = dot === -1 ? eventTable : eventTable.slice(dot + 1);
    return this.matchers.find((m) => same(m.table, table) && (m.schema === undefined || (schema !== undefined && same(m.schema, schema))));
  }

  async ingest(
    inputs: ReadonlyArray<DebeziumInput | RawEvent>,
    policy: InvalidPolicy,
    describe: (i: number) => string = (i) => `event ${i}`,
  ): Promise<IngestOutcome> {
    const entries: NewEntry[] = [];
    const eventKeys = new Map<string, string[]>();
    const skipped: IngestOutcome['skipped'] = {};
    const truncated: string[] = [];
    inputs.forEach((input, i) => {
      try {
        const e = mapDebeziumEvent(parsed(input, this.reuse), this.mapping);
        if (e.kind === 'skip') skipped[e.reason] = (skipped[e.reason] ?? 0) + 1;
        else if (e.kind === 'truncate') {
          skipped.truncate = (skipped.truncate ?? 0) + 1;
          truncated.push(this.tableFor(e.table)?.name ?? e.table);
        } else {
          const matcher = this.matcherFor(e.table);
          const config = matcher?.config;
          const table = config?.name ?? `${UNCONFIGURED_PREFIX}${e.table}`;
          try {
            // Before anything of the change is stored: Redis never holds a column or value that does not leave.
            const change = matcher?.rules ? matcher.rules.apply(e, config!.primaryKey, describe(i)) : e;
            if (change.key) eventKeys.set(table, [...change.key.keys()]);
            const row = changeRow(change, config ? config.primaryKey : null, describe(i));
            entries.push({
              table,
              op: e.op,
              ordering: e.ordering,
              identity: e.position,
              row: row.json,
              key: `[${row.key.join(',')}]`,
              ...(e.floor ? { floor: e.floor } : {}),
            });
          } catch (err) {
            if (policy === 'reject' || !isAppError(err)) throw err;
            entries.push({ table, error: err.message });
          }
        }
      } catch (err) {
        if (!isAppError(err) || err.code !== 'EVENT_INVALID') throw err;
        const message = err.message.startsWith(describe(i)) ? err.message : `${describe(i)}: ${err.message}`;
        if (policy === 'reject') throw new AppError('EVENT_INVALID', message, { details: { event: i, field: err.details?.field } });
        entries.push({ table: UNREADABLE_TABLE, error: message });
      }
    });
    if (entries.length > 0) await this.append(entries, eventKeys);
    for (const table of truncated) {
      // As for Postgres TRUNCATE: no keys travel with it, so it cannot become deletes.
      this.logger.warn(
        { source: this.source.name, table },
        'TRUNCATE is not replicated as deletes; re-snapshot the table (e.g. a Debezium incremental snapshot)',
      );
      this.metrics.errors.inc({ source: this.source.name, table, code: 'TRUNCATE_NOT_REPLICATED' });
    }
    for (const [reason, n] of Object.entries(skipped)) this.metrics.eventsSkipped.inc({ source: this.source.name, reason }, n);
    for (const e of entries) this.metrics.eventsIngested.inc({ source: this.source.name, table: e.table });
    return { accepted: entries.length, skipped };
  }

  private async append(entries: NewEntry[], eventKeys: Map<string, string[]>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new AppError('REDIS_UNAVAILABLE', `Redis did not store the events within ${APPEND_TIMEOUT_MS / 1000} s`, {
              retryable: true,
              retryAfterMs: 2000,
            }),
          ),
        APPEND_TIMEOUT_MS,
      );
    });
    // Taken before the append is sent: a connection lost after it may have lost the append with a dying master.
    const since = connectionEpoch(this.redis);
    try {
      const result = await Promise.race([this.buffer.append(entries, this.source.maxBufferedBytes, eventKeys), timeout]);
      if (!result.stored) {
        throw new AppError(
          'INGEST_FULL',
          `source ${this.source.name} holds ${result.bytes} bytes of undelivered events, at its maxBufferedBytes (${this.source.maxBufferedBytes}); retry once deliveries catch up`,
          { retryable: true, retryAfterMs: 5000 },
        );
      }
      // The producer drops what it was told is stored: a failover must not be able to lose it. A WAIT answered
      // after a reconnect counts the replicas of whichever master answers now, not the append: it confirms nothing.
      await waitForReplicas(this.redis, this.replicas, this.buffer.keys.bytes, since);
    } finally {
      clearTimeout(timer);
    }
  }
}
