import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CronExpressionParser } from 'cron-parser';
import { CST, LineCounter, Parser, parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { AppError } from './core/errors.js';
import { parseDuration } from './core/duration.js';
import { defaultTarget, parseQualifiedName } from './core/identifiers.js';
import { STREAM_LIMITS } from './core/batching.js';
import { conditionProblem, mysqlLexerProblem } from './core/sql-text.js';
import { MIN_TOKEN_LENGTH, isLoopback, webAccessProblems } from './core/web-access.js';
import type { TableSpec } from './core/ports.js';
import { maskingSchema, resolveTransformPaths, ruleProblems, tableRuleOptions } from './config-rules.js';

/**
 * The configuration schema and its loader: the only code that reads process.env. Every problem is reported at
 * once, each with its key path and what would be valid.
 */

/** Strings that may arrive as numbers from `${VAR}` (a numeric token or password). */
const text = z.union([z.string(), z.number()]).transform(String);

/** The longest duration a Node.js timer can wait (about 24.8 days); longer ones would fire at once. */
const MAX_DURATION_MS = 2_147_483_647;
const DURATION_FORMS = 'a duration such as "30s", "5m" or a finite number of milliseconds';

const duration = z.unknown().transform((v, ctx) => {
  if (typeof v === 'number' && !Number.isFinite(v)) {
    ctx.addIssue({ code: 'custom', message: `must be ${DURATION_FORMS} from 0 to ${MAX_DURATION_MS}; got ${v}` });
    return z.NEVER;
  }
  if (typeof v !== 'string' && typeof v !== 'number') {
    ctx.addIssue({ code: 'custom', message: `must be ${DURATION_FORMS}; got ${v === null ? 'null' : typeof v}` });
    return z.NEVER;
  }
  try {
    const ms = parseDuration(v);
    if (ms <= MAX_DURATION_MS) return ms;
    ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_DURATION_MS} ms (about 24.8 days); got ${ms} ms` });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
  return z.NEVER;
});

/** A duration of at least `min` ms; the message names the minimum as written in the config (`label`). */
/** Durations as the JSON Schema describes them (the zod schema parses them in code, which JSON Schema cannot see). */
const DURATION_SCHEMAS = new WeakSet<object>([duration]);

function atLeast(min: number, label: string) {
  const schema = duration.refine((ms) => ms >= min, { error: (iss) => `must be at least ${label} (got ${String(iss.input)} ms)` });
  DURATION_SCHEMAS.add(schema);
  return schema;
}

/**
 * Schedules: BullMQ refuses an interval of 0 when the scheduler registers it, and a table polled more often than
 * once a second only adds load. The CDC tick may be shorter: it only starts a reader when none holds the slot.
 */
const every = atLeast(1000, '1s');
const cdcEvery = atLeast(100, '100ms');

const cron = z.string().refine(
  (v) => {
    try {
      CronExpressionParser.parse(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a valid cron expression (five fields, e.g. "*/5 * * * *")' },
);

/** A Redis server as `host:port` (an IPv6 address in brackets: `[::1]:6379`). */
const redisNode = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]+):\d{1,5}$/, 'must be host:port, such as 10.0.0.5:26379 ([::1]:26379 for IPv6)');

const qualifiedName = z
  .string()
  .min(1)
  .refine(
    (v) => {
      try {
        parseQualifiedName(v);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'must be "table" or "schema.table" (quote names with dots or capitals: public."Order Items")' },
  );

/** SQL that pushsync wraps in parentheses inside its own statements: one condition, nothing that could end it. */
const sqlCondition = z.string().superRefine((v, ctx) => {
  const problem = conditionProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: `must be one SQL condition: ${problem}` });
});

/** Why `destination.url` is refused, or undefined: the API key travels in every request's headers. */
function destinationUrlProblem(url: string, allowInsecureHttp: boolean): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'must be an https: URL such as https://api.definite.app/v2/stream';
  }
  if (parsed.protocol === 'https:') return undefined;
  if (parsed.protocol !== 'http:') {
    return `must be an https: URL (http: only to a loopback host, or with destination.allowInsecureHttp: true); ${parsed.protocol} is not supported`;
  }
  if (isLoopback(parsed.hostname) || allowInsecureHttp) return undefined;
  return (
    `must be an https: URL: http: to ${parsed.hostname}, which is not loopback (127.0.0.0/8, ::1, localhost), would send the API key ` +
    'unencrypted; use https:, or set destination.allowInsecureHttp: true for a network you trust'
  );
}

const tableSchema = z
  .object({
    /** The table: `table` or `schema.table`; quote names with dots or capitals (`public."Order Items"`). */
    name: qualifiedName,
    /** Primary-key columns, in key order. @defaultValue the table's own primary key */
    primaryKey: z.array(z.string().min(1)).min(1).optional(),
    /**
     * `watermark` polls by a watermark column; `cdc` streams changes from the source's replication slot.
     * @defaultValue the source's `mode`
     */
    mode: z.enum(['watermark', 'cdc']).optional(),
    /** The column whose value grows with every change (`updated_at`), required in watermark mode. */
    watermark: z.string().min(1).optional(),
    /** Poll interval, a duration (at least 1s). @defaultValue 30s when neither every nor cron is set */
    every: every.optional(),
    /** Poll schedule, a five-field cron expression; instead of `every`. */
    cron: cron.optional(),
    /** Rows per push job (one key range), 1 to 50000. @defaultValue 5000 */
    batchRows: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(5000),
    /**
     * Subtracted from the late-commit read boundary, a duration: for watermarks written from application clocks
     * that may run behind the database's. @defaultValue 0
     */
    safetyLag: duration.default(0),
    /** Periodic primary-key reconciliation that sends deletes for rows gone from the source (watermark mode). */
    reconcile: z
      .object({
        /** How often to reconcile, a duration (at least 1s). */
        every,
        /** How long to wait for transactions open at the check before sending deletes (else: next run), a duration. @defaultValue 5m */
        maxWait: duration.default(300_000),
      })
      .strict()
      .optional(),
    /** Rows matching this are sent with `_op = delete`: a column (true or non-null means deleted) or one SQL condition. */
    softDelete: z
      .union([z.object({ column: z.string().min(1) }).strict(), z.object({ condition: sqlCondition }).strict()], {
        message: 'use { column: deleted_at } or { condition: "status = \'deleted\'" }',
      })
      .optional(),
    /** The destination table, `schema.table`. @defaultValue bronze.<source>_<table> */
    target: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/, 'must be schema.table using letters, digits and _')
      .optional(),
    /**
     * What a change of the table's columns does while pushsync runs. `evolve`: rows are read and sent with the new
     * columns from the next read on, and the change is announced. `freeze`: the change is announced and the table
     * pauses (nothing of it is extracted or sent) until `pushsync schema accept --table <source>.<table>`.
     * @defaultValue 'evolve'
     */
    schemaChanges: z.enum(['evolve', 'freeze']).default('evolve'),
    /**
     * What an added column (one that leaves) does to rows sent before it existed. `keep`: they stay as sent, so the
     * silver view shows NULL for the new column until a row changes; `backfill`: the table is read once more from
     * its start, under a new generation, so every row is sent again with the new column (watermark mode).
     * @defaultValue 'keep'
     */
    onAddedColumn: z.enum(['keep', 'backfill']).default('keep'),
    ...tableRuleOptions,
  })
  .strict()
  .refine((t) => !(t.every !== undefined && t.cron !== undefined), { message: 'set either every or cron, not both' });

const slotName = z.string().regex(/^[a-z0-9_]{1,63}$/, 'use 1-63 lower-case letters, digits and _');

const cdcSchema = z
  .object({
    /** The publication pushsync creates or extends. @defaultValue pushsync_<source> */
    publication: slotName.optional(),
    /** The logical replication slot (names are cluster-wide). @defaultValue pushsync_<source> */
    slot: slotName.optional(),
    /** How often the stream reader is started when none is running, a duration (at least 100ms). @defaultValue 1s */
    every: cdcEvery.default(1000),
    /** A reader hands over after this long, so work moves between processes and the dashboard shows progress, a duration. @defaultValue 60s */
    maxRunTime: duration.default(60_000),
    /** Keys per push job, 1 to 50000. @defaultValue 5000 */
    batchKeys: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(5000),
    /**
     * Changes are enqueued (and the slot acknowledged) at least this often while the stream is busy, a duration. It
     * bounds how long a committed change waits before a push worker can send it; under a steady stream, jobs hold
     * about `flushInterval` worth of changes (at most `batchKeys`). @defaultValue 100ms
     */
    flushInterval: duration.default(100),
    /** Log a warning when the slot holds back more WAL than this many bytes. @defaultValue 1073741824 (1 GiB) */
    lagWarningBytes: z
      .number()
      .int()
      .min(0)
      .default(1024 * 1024 * 1024),
    /**
     * The change stream is ended with a retryable error (and started again at the confirmed position) when nothing
     * arrives from the server for this long, a duration (0: never). It catches a connection that stopped answering
     * without a reset. PostgreSQL: a keepalive is asked for at half of it (as PostgreSQL's wal_receiver_timeout).
     * MySQL/MariaDB: the binlog connection asks for a heartbeat event at half of it (`@master_heartbeat_period`),
     * so an idle binlog still sends something. @defaultValue 60s
     */
    receiveTimeout: duration.default(60_000),
    /** MySQL/MariaDB: the replica server_id of the binlog reader; unique among the server's replicas. @defaultValue derived from the source and slot names */
    serverId: z.number().int().min(1).max(4294967295).optional(),
  })
  .strict();

/** Problems of a PostgreSQL connection URL, without echoing it (it may carry a password). */
function postgresUrlProblem(url: string): string | undefined {
  const example = 'must be a postgres:// or postgresql:// URL, e.g. postgres://user:password@host:5432/database';
  const parts = /^(postgres|postgresql):\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/i.exec(url);
  if (!parts) return example;
  // An @ after what was taken for host and port: the password (or user name) holds a #, / or ?, which ends the
  // authority, so "host" and "port" are parts of it and are not echoed.
  if (url.slice(parts[0].length).includes('@')) {
    return 'the user name or password holds a character that must be percent-encoded (# as %23, / as %2F, ? as %3F, @ as %40)';
  }
  const port = parts[3];
  if (port !== undefined && port !== '') {
    if (!/^\d+$/.test(port)) return `port ${port} is not a number`;
    if (Number(port) < 1 || Number(port) > 65535) return `port ${port} is out of range (1-65535)`;
  }
  try {
    new URL(url);
  } catch {
    return `is not a parseable URL (percent-encode special characters in the user name and password, e.g. @ as %40)`;
  }
  return undefined;
}

function mysqlUrlProblem(url: string): string | undefined {
  return /^(mysql|mariadb):\/\/[^/]/.test(url) && URL.canParse(url)
    ? undefined
    : 'must be a mysql:// or mariadb:// URL, e.g. mysql://user:password@host:3306/database';
}

const sourceSchema = z
  .object({
    /** The source's name: in `_source`, default targets, metrics labels and commands (letters, digits, _ and -). */
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'use letters, digits, _ and -'),
    /** The engine: `postgres`, or `mysql` for MySQL and MariaDB. */
    kind: z.enum(['postgres', 'mysql'], { error: 'must be postgres or mysql' }),
    /** Connection URL (`postgres://…`, `mysql://…` or `mariadb://…`), usually `${DATABASE_URL}`; never logged. */
    url: z.string().min(1),
    /** Connections per process, 1 to 64. @defaultValue 4 */
    poolSize: z.number().int().min(1).max(64).default(4),
    /** Server-side limit on one statement, a duration. @defaultValue 5m */
    statementTimeout: duration.default(300_000),
    /**
     * Postgres only: how backfill reads get each row's JSON. `json`: Postgres builds it (`to_json`). `copy`: Postgres
     * prints the rows with `COPY … TO STDOUT` and pushsync builds the same JSON, byte for byte; about half the
     * database's CPU per row and more of pushsync's (README, "Backfill reads with COPY"). @defaultValue 'json'
     */
    backfillRead: z.enum(['json', 'copy'], { error: 'must be json or copy' }).default('json'),
    /** Default mode for the source's tables. @defaultValue 'watermark' */
    mode: z.enum(['watermark', 'cdc']).default('watermark'),
    /** Change data capture settings, for tables in mode cdc. */
    cdc: cdcSchema.optional(),
    /** The tables to sync. */
    tables: z.array(tableSchema).min(1),
  })
  .strict()
  // Runs even when other keys of the source are invalid, like the destination URL check.
  .superRefine(
    (s, ctx) => {
      // A `${VAR}` a command did not need stays unresolved: it is checked where it is used.
      if (typeof s.url !== 'string' || unresolvedVariable(s.url) !== undefined) return;
      // An unknown kind is reported on its own: which URL it would need is unknown.
      const problem = s.kind === 'mysql' ? mysqlUrlProblem(s.url) : s.kind === 'postgres' ? postgresUrlProblem(s.url) : undefined;
      if (problem) ctx.addIssue({ code: 'custom', path: ['url'], message: problem });
      if (s.kind === 'mysql' && s.backfillRead === 'copy') {
        ctx.addIssue({ code: 'custom', path: ['backfillRead'], message: 'copy is for Postgres sources; MySQL reads rows as text already' });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

/** A Debezium change stream pushed to pushsync (HTTP) or read from Debezium Server's Redis sink. */
const debeziumSourceSchema = z
  .object({
    /** The source's name: in `_source`, default targets, metrics labels and commands (letters, digits, _ and -). */
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'use letters, digits, _ and -'),
    /** Change events from an existing Debezium pipeline. */
    kind: z.literal('debezium'),
    /** POST /ingest/debezium on web.port (role ingest). */
    http: z
      .object({
        /** Bearer token the ingest endpoint requires (at least 16 characters on a non-loopback host). */
        token: text.optional(),
      })
      .strict()
      .optional(),
    /** Debezium Server's Redis sink, read through a consumer group (role ingest). */
    redisStreams: z
      .object({
        /** The Redis the sink writes to (`redis://` or `rediss://`). */
        url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://'),
        /** Stream names, as the sink names them (`<prefix>.<schema>.<table>`). */
        streams: z.array(z.string().min(1)).min(1),
        /** The consumer group. @defaultValue 'pushsync' */
        group: z.string().min(1).default('pushsync'),
        /** Entries read per XREADGROUP call, 1 to 10000. @defaultValue 500 */
        batch: z.number().int().min(1).max(10_000).default(500),
        /** Pending entries of a consumer idle this long are claimed by another (XAUTOCLAIM), a duration. @defaultValue 30s */
        claimIdle: duration.default(30_000),
        /** The sink's `null.value`: entries with this value are tombstones. @defaultValue 'default' */
        nullValue: z.string().default('default'),
      })
      .strict()
      .optional(),
    /** Bytes of undelivered events held in Redis; past it, ingest answers 429 and stream reading pauses. @defaultValue 268435456 (256 MiB) */
    maxBufferedBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .default(256 * 1024 * 1024),
    /** Buffered events are cut into push jobs once batchRows are waiting or the oldest has waited this long, a duration. @defaultValue 1s */
    flushInterval: duration.default(1000),
    /** Debezium's placeholder for an unchanged TOASTed value (`unavailable.value.placeholder`). @defaultValue '__debezium_unavailable_value' */
    unavailableValue: z.string().min(1).default('__debezium_unavailable_value'),
    /** How the connector encodes bytes (`binary.handling.mode`). @defaultValue 'bytes' */
    binaryHandling: z.enum(['bytes', 'base64', 'base64-url-safe', 'hex']).default('bytes'),
    /** The tables whose events are delivered; events of other tables go to the dead-letter queue. */
    tables: z
      .array(
        z
          .object({
            /** Matched against each event's `source.schema` + `source.table`. */
            name: qualifiedName,
            /** Primary-key columns. @defaultValue the fields of the event key */
            primaryKey: z.array(z.string().min(1)).min(1).optional(),
            /** The destination table, `schema.table`. @defaultValue bronze.<source>_<table> */
            target: tableSchema.shape.target,
            /** Events per push job, 1 to 50000. @defaultValue 5000 */
            batchRows: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(5000),
            /**
             * Which columns leave: `{ include: [...] }` (the safe choice) or `{ exclude: [...] }`, by the event's
             * column names (any case; exactly when double-quoted). Applied as events are taken, before they are
             * stored in Redis; primary-key columns must leave. @defaultValue every column of the event
             */
            columns: tableRuleOptions.columns,
            /**
             * Masks by column (`hash`, `null`, `{ redact: "***" }`, `{ truncate: 3 }`, `{ replace: { pattern, with } }`),
             * applied as events are taken, before they are stored in Redis; a primary-key column only with `hash`.
             * @defaultValue none
             */
            masks: tableRuleOptions.masks,
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

/** Table options of database sources that a Debezium table cannot have: events carry no SQL to filter or select. */
const DEBEZIUM_REFUSED = {
  where: 'filter rows in the Debezium connector instead (e.g. a Filter SMT)',
  query: 'a Debezium table is the stream of one table; select columns with columns and masks',
  transform: 'Debezium tables do not run transforms; use columns and masks, or an SMT in the connector',
  onFilteredOut: 'a Debezium table has no where or transform',
} as const;

/** A Debezium source with the refused table options reported (naming each) and removed, so they are not also "unknown keys". */
function withoutRowRules(v: unknown, ctx: z.RefinementCtx): unknown {
  const tables = (v as { tables?: unknown }).tables;
  if (!Array.isArray(tables)) return v;
  return {
    ...(v as object),
    tables: tables.map((t: unknown, j) => {
      if (typeof t !== 'object' || t === null) return t;
      const rest: Record<string, unknown> = { ...(t as Record<string, unknown>) };
      for (const [key, instead] of Object.entries(DEBEZIUM_REFUSED)) {
        if (!(key in rest)) continue;
        ctx.addIssue({ code: 'custom', path: ['tables', j, key], message: `not supported for kind debezium: ${instead}` });
        delete rest[key];
      }
      return rest;
    }),
  };
}

/** Marks the by-kind source union for the JSON Schema (its parse is code). */
const SOURCE_UNIONS = new WeakSet<object>();

/** By kind: a Debezium source, else a database source (whose schema reports an unknown kind with every other problem). */
const anySourceSchema = z.unknown().transform((v, ctx): z.output<typeof sourceSchema> | z.output<typeof debeziumSourceSchema> => {
  const kind = typeof v === 'object' && v !== null ? (v as { kind?: unknown }).kind : undefined;
  const parsed = (kind === 'debezium' ? debeziumSourceSchema : sourceSchema).safeParse(kind === 'debezium' ? withoutRowRules(v, ctx) : v);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
  return z.NEVER;
});
SOURCE_UNIONS.add(anySourceSchema);

const configSchema = z
  .object({
    /** Where queues, cursors and leases live. */
    redis: z
      .object({
        /**
         * Redis URL (`redis://` or `rediss://`) of a single server. Leave it out with `sentinel` or `cluster`.
         * @defaultValue 'redis://127.0.0.1:6379'
         */
        url: z
          .string()
          .refine((v) => /^rediss?:\/\//.test(v) || unresolvedVariable(v) !== undefined, 'must start with redis:// or rediss://')
          .default('redis://127.0.0.1:6379'),
        /**
         * Prefix of every key; processes sharing it share the work. In cluster mode it is a hash tag (`pushsync`
         * is used as `{pushsync}`), so every key lives in one slot. @defaultValue 'pushsync'
         */
        prefix: z
          .string()
          .regex(/^(\{[A-Za-z0-9_-]+\}|[A-Za-z0-9_-]+)$/, 'use letters, digits, _ and -, optionally inside one pair of braces: {pushsync}')
          .default('pushsync'),
        /**
         * Redis Sentinel: pushsync asks the sentinels for the current master and follows a failover. Instead of
         * `url`.
         */
        sentinel: z
          .object({
            /** The sentinels, `host:port` each (three or more on separate machines for a quorum). */
            nodes: z.array(redisNode).min(1),
            /** The master group's name, as in `sentinel monitor <name> …`. */
            masterName: z.string().min(1),
            /** ACL user of the sentinels, when they require one. */
            username: text.optional(),
            /** Password of the sentinels (`requirepass` in sentinel.conf), usually `${REDIS_SENTINEL_PASSWORD}`. */
            password: text.optional(),
            /** TLS to the sentinels (system CAs). @defaultValue false */
            tls: z.boolean().default(false),
          })
          .strict()
          .optional(),
        /**
         * Redis Cluster: the startup nodes pushsync discovers the cluster from. Instead of `url`. The prefix
         * becomes a hash tag, so pushsync's keys and queues live in one slot (one master and its replicas).
         */
        cluster: z
          .object({
            /** Some of the cluster's nodes, `host:port` each; the rest are discovered. */
            nodes: z.array(redisNode).min(1),
          })
          .strict()
          .optional(),
        /** ACL user of the Redis servers in sentinel and cluster modes (with `url`, write it in the URL). */
        username: text.optional(),
        /** Password of the Redis servers in sentinel and cluster modes, usually `${REDIS_PASSWORD}` (with `url`, in the URL). */
        password: text.optional(),
        /** TLS to the Redis servers in sentinel and cluster modes, with the system CAs (with `url`, use `rediss://`). @defaultValue false */
        tls: z.boolean().default(false),
        /**
         * Replicas that must hold pushsync's writes (Redis `WAIT`) before it confirms a position outside Redis that
         * cannot be read again: a CDC slot or binlog acknowledgement, an ingest answer, a Debezium stream entry.
         * 0 waits for none: a failover may then lose such writes (see README, Redis high availability).
         * @defaultValue 0
         */
        waitReplicas: z.number().int().min(0).max(16).default(0),
        /** How long to wait for `waitReplicas` (a duration); fewer in time fail the step, which is retried. @defaultValue 5000 (5s) */
        waitTimeout: atLeast(10, '10ms').default(5000),
        /**
         * How long one attempt to connect to Redis may take, in ms (a duration). One-shot commands (`check`,
         * `status`, `dlq`, `reset`, `cdc`, `sync --once`) fail with REDIS_UNAVAILABLE when Redis does not answer
         * within it; `start` keeps retrying. @defaultValue 10000 (10s)
         */
        connectTimeout: atLeast(100, '100ms').default(10_000),
      })
      .strict()
      .prefault({}),
    /** The Stream API. */
    destination: z
      .object({
        /**
         * The Stream API endpoint. Must be `https:`; `http:` is accepted only to a loopback host (127.0.0.0/8, ::1,
         * localhost) or with `allowInsecureHttp`.
         * @defaultValue 'https://api.definite.app/v2/stream'
         */
        url: z.string().default('https://api.definite.app/v2/stream'),
        /**
         * Accept an `http:` URL to a host that is not loopback. The API key and every row then cross the network
         * unencrypted: only for a network you trust, such as the dev sink in docker compose.
         * @defaultValue false
         */
        allowInsecureHttp: z.boolean().default(false),
        /** The API key, sent as `Authorization: Bearer`; usually `${DEFINITE_API_KEY}`. Never logged or stored. */
        apiKey: z
          .union([z.string(), z.number()], {
            error: (iss) => (iss.input === undefined ? 'is required: set destination.apiKey, e.g. apiKey: ${DEFINITE_API_KEY}' : 'must be a string'),
          })
          .transform(String)
          .pipe(z.string().min(1, 'is empty: set DEFINITE_API_KEY or destination.apiKey')),
        /** How long one request may take before it is abandoned and retried, a duration. @defaultValue 60s */
        timeout: duration.default(60_000),
        /** Request body compression (`gzip` sends `Content-Encoding: gzip`). @defaultValue 'none' */
        compression: z.enum(['none', 'gzip']).default('none'),
        /**
         * zlib level of `gzip` bodies, 1 (fastest) to 9 (smallest). Level 1 gave 86% of level 6's size reduction
         * for 39% of its CPU on the benchmark's rows (bench/README.md). @defaultValue 1
         */
        gzipLevel: z.number().int().min(1).max(9).default(1),
        /** Ask the Stream API to wait for the lake commit (`config.wait`). @defaultValue false */
        wait: z.boolean().default(false),
        /** Extra `config.tags` on every request (`source: pushsync` is always set). @defaultValue {} */
        tags: z.record(z.string(), z.string()).default({}),
        /** Attempts per push job before it stays in the dead-letter queue, 1 to 100. @defaultValue 12 */
        attempts: z.number().int().min(1).max(100).default(12),
        /** Exponential backoff between attempts (never shorter than a server's Retry-After). */
        backoff: z
          .object({
            /** The first delay, a duration. @defaultValue 1s */
            base: duration.default(1000),
            /** The longest delay, a duration. @defaultValue 5m */
            cap: duration.default(300_000),
            /** Random share of each delay, 0 to 1. @defaultValue 0.5 */
            jitter: z.number().min(0).max(1).default(0.5),
          })
          .strict()
          .prefault({}),
        /** Rows per request, at most the Stream API's 50000. @defaultValue 50000 */
        maxRows: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(STREAM_LIMITS.maxRows),
        /** Bytes per request body, 1024 to the Stream API's 10 MB. @defaultValue 10485760 */
        maxBytes: z.number().int().min(1024).max(STREAM_LIMITS.maxBytes).default(STREAM_LIMITS.maxBytes),
        /** Requests in flight per push worker process, 1 to 256. @defaultValue 8 */
        concurrency: z.number().int().min(1).max(256).default(8),
        /**
         * The table that receives one record per schema change pushsync detects (a column added, dropped or
         * retyped, a table re-created), `schema.table`. @defaultValue 'bronze.pushsync_schema_changes'
         */
        schemaChangesTarget: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/, 'must be schema.table using letters, digits and _')
          .default('bronze.pushsync_schema_changes'),
      })
      .strict()
      // Runs even when other destination keys are invalid (so a cleartext URL is never left unreported): the fields
      // may then be missing or of any type.
      .superRefine(
        (d, ctx) => {
          const problem = typeof d.url === 'string' ? destinationUrlProblem(d.url, d.allowInsecureHttp === true) : undefined;
          if (problem) ctx.addIssue({ code: 'custom', path: ['url'], message: problem });
        },
        { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
      ),
    /** Extract workers. */
    extract: z
      .object({
        /** Table extract runs one process runs at once, 1 to 64; each CDC source's reader gets a slot on top. @defaultValue 2 */
        concurrency: z.number().int().min(1).max(64).default(2),
        /** Undelivered push jobs per table before extraction pauses (backpressure). @defaultValue 200 */
        maxPendingBatches: z.number().int().min(1).default(200),
        /** How long a table's (or slot's) reader lease outlives a reader that died, a duration. @defaultValue 30s */
        leaseTtl: duration.default(30_000),
        /** Attempts per extract run before it fails, 1 to 100. @defaultValue 5 */
        attempts: z.number().int().min(1).max(100).default(5),
        /**
         * How often a running backfill logs its progress (rows, estimated total, rate, ETA) and updates its job's
         * progress in the dashboard, a duration (at least 100ms). @defaultValue 5s
         */
        progressInterval: atLeast(100, '100ms').default(5000),
      })
      .strict()
      .prefault({}),
    masking: maskingSchema.optional(),
    /** The sources and their tables. */
    sources: z.array(anySourceSchema).min(1),
    /** Health, readiness, metrics and (role `web`) the dashboard. */
    web: z
      .object({
        /** The HTTP port (0: any free port). @defaultValue 3000 */
        port: z.number().int().min(0).max(65535).default(3000),
        /** The address to listen on; any non-loopback host requires `auth`. @defaultValue '127.0.0.1' */
        host: z.string().default('127.0.0.1'),
        /** Bull Board shows queues and jobs without retry, clean, add, promote, remove or pause controls. @defaultValue false */
        readOnly: z.boolean().default(false),
        /**
         * When set, `GET /metrics` answers only requests with `Authorization: Bearer <metricsToken>` (at least 16
         * characters; basic auth with it as the password works too). The dashboard's credentials do not open it, so a scraper holds no dashboard access.
         * @defaultValue unset: /metrics answers without credentials
         */
        metricsToken: text
          .refine((v) => v.trim().length >= 16 || unresolvedVariable(v) !== undefined, 'must be at least 16 characters (openssl rand -hex 16)')
          .optional(),
        /** Dashboard credentials: a token (at least 16 characters) or a user name and password (at least 12). */
        auth: z
          .object({
            /** Bearer token, or the password of basic auth with any user name. */
            token: text.optional(),
            /** Basic-auth user name, with `password`. */
            username: text.optional(),
            /** Basic-auth password, with `username`. */
            password: text.optional(),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Stopping on SIGTERM or SIGINT. */
    shutdown: z
      .object({
        /**
         * How long in-flight jobs may take to finish after a stop signal, a duration; then they are handed back
         * (another worker takes them over once their lease lapses, and re-sends from their saved progress) and the
         * process exits 0. @defaultValue 30s
         */
        timeout: duration.default(30_000),
      })
      .strict()
      .prefault({}),
    /** Logging. */
    log: z
      .object({
        /** The lowest level logged. @defaultValue 'info' */
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
        /**
         * `pretty`: one readable line per entry (ISO time, level, message, fields); `json`: one JSON object per line
         * (ISO `time`), for log shippers. @defaultValue pretty when stdout is a terminal, json otherwise
         */
        format: z.enum(['json', 'pretty']).optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/**
 * The config file's JSON Schema (`pushsync config schema`), generated from the zod schema, for editors: with
 * `# yaml-language-server: $schema=./pushsync.schema.json` at the top of the file they complete keys and check values.
 * Checks that need code (URLs, cron, SQL conditions, credential strength) are only in pushsync itself.
 */
const ENV_REF_SCHEMA = { type: 'string', pattern: '^\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}$' };

export function configJsonSchema(): Record<string, unknown> {
  return configJsonSchemaOf(configSchema);
}

function configJsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, {
    io: 'input',
    unrepresentable: 'any',
    override: (ctx) => {
      const def = (ctx.zodSchema as { _zod: { def: { type: string; innerType?: object; defaultValue?: unknown } } })._zod.def;
      // A duration's default is in milliseconds (a valid duration as well); zod leaves it out for a parsed input.
      if (def.type === 'default' && def.innerType && DURATION_SCHEMAS.has(def.innerType) && ctx.jsonSchema.default === undefined) {
        ctx.jsonSchema.default = def.defaultValue;
      }
      if (SOURCE_UNIONS.has(ctx.zodSchema)) {
        const part = (schema: z.ZodType): Record<string, unknown> => {
          const { $schema: _ignored, ...rest } = configJsonSchemaOf(schema);
          return rest;
        };
        Object.assign(ctx.jsonSchema, { anyOf: [part(sourceSchema), part(debeziumSourceSchema)] });
        return;
      }
      if (DURATION_SCHEMAS.has(ctx.zodSchema)) {
        Object.assign(ctx.jsonSchema, {
          description: 'A duration: "500ms", "30s", "5m", "2h", "1d", or a number of milliseconds',
          anyOf: [{ type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)?\\s*$' }, { type: 'number', minimum: 0 }, ENV_REF_SCHEMA],
        });
        return;
      }
      // Any scalar may be written as `${VAR}` or `${VAR:-default}`, resolved before the value is checked.
      const j = ctx.jsonSchema;
      const scalar = (j.type !== undefined && j.type !== 'object' && j.type !== 'array') || j.enum !== undefined || j.const !== undefined;
      if (scalar && j.anyOf === undefined) {
        const { default: defaultValue, description, ...rest } = j;
        for (const key of Object.keys(j)) delete j[key];
        Object.assign(
          j,
          { anyOf: [rest, ENV_REF_SCHEMA] },
          defaultValue === undefined ? {} : { default: defaultValue },
          description === undefined ? {} : { description },
        );
      }
    },
  }) as Record<string, unknown>;
}

type RawConfig = z.infer<typeof configSchema>;
type RawSource = z.infer<typeof sourceSchema>;
type RawDebezium = z.infer<typeof debeziumSourceSchema>;
type RawTable = RawSource['tables'][number];

export interface TableConfig extends Omit<RawTable, 'target' | 'every' | 'mode'> {
  source: string;
  target: string;
  /** `debezium`: the table's changes arrive as Debezium events (a source of kind debezium). */
  mode: 'watermark' | 'cdc' | 'debezium';
  /** Interval in ms; when neither every nor cron is set the default is 30 s. */
  every?: number | undefined;
}
type RawCdc = z.infer<typeof cdcSchema>;
export type CdcConfig = Omit<RawCdc, 'publication' | 'slot'> & { publication: string; slot: string };
export type SourceConfig = Omit<RawSource, 'tables' | 'cdc'> & { tables: TableConfig[]; cdc: CdcConfig };
export type DebeziumSourceConfig = Omit<RawDebezium, 'tables'> & { tables: TableConfig[] };
/** `sources` holds the database sources; Debezium sources, listed in the same `sources:` key, are in `debezium`. */
export type Config = Omit<RawConfig, 'sources'> & { sources: SourceConfig[]; debezium: DebeziumSourceConfig[] };

const DEFAULT_EVERY_MS = 30_000;

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const PLACEHOLDER = /PUSHSYNC_ENV_REF_(\d+)_/g;

/**
 * `${VAR}` references are swapped for inert placeholders before YAML parsing, so they work in flow style
 * (`auth: { token: ${TOKEN} }`, where a bare `{` would break YAML) and so a value can never inject YAML.
 */
function protectEnvRefs(text: string): { text: string; refs: string[] } {
  const refs: string[] = [];
  return { text: text.replace(ENV_REF, (m) => `PUSHSYNC_ENV_REF_${refs.push(m) - 1}_`), refs };
}

/**
 * Values that only some commands use. A `${VAR}` without default that is unset in one of them is an error only for
 * a command that needs the value; otherwise the reference stays in the value unresolved, and `resolved` refuses it
 * where it would be used.
 */
export const CONFIG_NEEDS = ['redis.url', 'sources.url', 'destination.apiKey', 'web.auth', 'web.metricsToken'] as const;
export type ConfigNeed = (typeof CONFIG_NEEDS)[number];

/** `sources[2].url` → `sources.url`, `web.auth.token` → `web.auth`: the need a value path belongs to, if any. */
function needOf(path: string): ConfigNeed | undefined {
  // 'redis.url' stands for the connection to Redis: passwords of sentinel and cluster modes are needed with it.
  if (/^redis\.(sentinel|username|password)/.test(path)) return 'redis.url';
  const general = path.replace(/\[\d+\]/g, '');
  return CONFIG_NEEDS.find((n) => general === n || general.startsWith(`${n}.`));
}

/** The variable of an unset `${VAR}` left in a value no command needed so far, if any. */
export function unresolvedVariable(value: string): string | undefined {
  return /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(value)?.[1];
}

/** CONFIG_INVALID naming the key and the variable, for a value whose `${VAR}` was left unresolved. */
export function unresolvedError(value: string, path: string): AppError | undefined {
  const name = unresolvedVariable(value);
  return name === undefined ? undefined : new AppError('CONFIG_INVALID', `${path}: environment variable ${name} is not set`);
}

/** The value, or that error: for a command using a value it did not declare among its needs. */
export function resolved(value: string, path: string): string {
  const error = unresolvedError(value, path);
  if (error) throw error;
  return value;
}

function resolveRef(ref: string, env: NodeJS.ProcessEnv, path: string, problems: string[], needs: readonly ConfigNeed[]): string {
  const [, name, fallback] = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/.exec(ref)!;
  const v = env[name!];
  if (v !== undefined && v !== '') return v;
  if (fallback !== undefined) return fallback;
  const need = needOf(path);
  if (need !== undefined && !needs.includes(need)) return `\${${name}}`;
  problems.push(`${path || '(root)'}: environment variable ${name} is not set (write \${${name}:-default} to allow a default)`);
  return '';
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` (or their placeholders) in every string value; unset variables without
 * default are errors. A value that is one reference alone and resolves to a number or boolean becomes one, so
 * `port: ${PORT:-3000}` works.
 */
function interpolate(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: string,
  problems: string[],
  refs: string[],
  needs: readonly ConfigNeed[],
): unknown {
  if (typeof value === 'string') {
    const whole = /^PUSHSYNC_ENV_REF_(\d+)_$/.exec(value) ?? /^\$\{[^}]*\}$/.exec(value);
    const out = value
      .replace(PLACEHOLDER, (_m, i: string) => resolveRef(refs[Number(i)]!, env, path, problems, needs))
      .replace(ENV_REF, (m) => resolveRef(m, env, path, problems, needs));
    if (whole) {
      // Only when the number prints back identically: a token such as 007 or a 20-digit key must stay text.
      if (/^-?\d+(\.\d+)?$/.test(out) && String(Number(out)) === out) return Number(out);
      if (out === 'true' || out === 'false') return out === 'true';
    }
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${path}[${i}]`, problems, refs, needs));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, env, path ? `${path}.${k}` : k, problems, refs, needs);
    return out;
  }
  return value;
}

/** Empty strings from `${VAR:-}` mean "not set" for optional keys. */
function dropEmpty(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropEmpty);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== '')
        .map(([k, v]) => [k, dropEmpty(v)]),
    );
  }
  return value;
}

function issuePath(path: PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '') || '(root)';
}

/** A Debezium source needs a way in, and its ingest endpoint a strong token wherever it is reachable from outside. */
function debeziumProblems(s: RawDebezium, i: number, host: string): string[] {
  const problems: string[] = [];
  if (!s.http && !s.redisStreams) problems.push(`sources[${i}]: set http (POST /ingest/debezium) or redisStreams, or both`);
  const token = s.http?.token;
  if (s.http && !isLoopback(host)) {
    if (token === undefined) problems.push(`sources[${i}].http.token: web.host ${host} is not loopback, so POST /ingest/debezium needs a token`);
    else if (token.trim().length < MIN_TOKEN_LENGTH) {
      problems.push(
        `sources[${i}].http.token: must be at least ${MIN_TOKEN_LENGTH} characters because web.host ${host} is not loopback; generate one with: openssl rand -hex 16`,
      );
    }
  }
  return problems;
}

/**
 * The column rules of Debezium tables, checked as far as the config can tell (no catalog: the event's columns are
 * known only as events arrive, where core/debezium-rules.ts checks the rest).
 */
function debeziumRuleProblems(tables: RawDebezium['tables'], i: number): string[] {
  const problems: string[] = [];
  tables.forEach((t, j) => {
    const at = `sources[${i}].tables[${j}]`;
    const same = (a: string, b: string): boolean => a.replace(/^"(.*)"$/, '$1').toLowerCase() === b.replace(/^"(.*)"$/, '$1').toLowerCase();
    const leaves = (c: string): boolean =>
      t.columns === undefined
        ? true
        : 'include' in t.columns
          ? t.columns.include.some((x) => same(x, c))
          : !t.columns.exclude.some((x) => same(x, c));
    for (const c of t.primaryKey ?? []) {
      if (!leaves(c)) problems.push(`${at}.columns: primary-key column ${c} must leave (key columns cannot be left out; mask it with hash instead)`);
    }
    for (const [c, mask] of Object.entries(t.masks ?? {})) {
      if (!leaves(c)) problems.push(`${at}.masks.${c}: column ${c} does not leave (see columns), so it cannot be masked`);
      else if (mask.kind === 'truncateTime')
        problems.push(`${at}.masks.${c}: truncate: ${mask.unit} is not supported for kind debezium (it is computed in the source's SQL)`);
      else if (mask.kind !== 'hash' && (t.primaryKey ?? []).some((k) => same(k, c))) {
        problems.push(`${at}.masks.${c}: a primary-key column can only be masked with hash (other masks make keys collide)`);
      }
    }
  });
  return problems;
}

/** One way to reach Redis: `url`, `sentinel` or `cluster` (checked on the input: `url` has a default). */
function redisModeProblems(input: unknown): string[] {
  const r = (input as { redis?: Record<string, unknown> } | null)?.redis ?? {};
  const modes = ['url', 'sentinel', 'cluster'].filter((k) => r[k] !== undefined);
  const problems: string[] = [];
  if (modes.length > 1) problems.push(`redis: set one of url, sentinel and cluster, not ${modes.join(' and ')}`);
  if (r.sentinel === undefined && r.cluster === undefined) {
    for (const k of ['username', 'password', 'tls'].filter((x) => r[x] !== undefined)) {
      problems.push(`redis.${k}: applies to sentinel and cluster modes; with url, write it in the URL (rediss:// for TLS)`);
    }
  }
  return problems;
}

/**
 * Configured SQL of a MySQL/MariaDB table that MySQL's lexer would read otherwise than the condition scanner did
 * (`mysqlLexerProblem`), refused at load as Postgres-side scan problems are; each problem once, after the scan's own.
 */
function mysqlSqlProblems(
  tables: ReadonlyArray<{ where?: string | undefined; query?: string | undefined; softDelete?: object | undefined }>,
  i: number,
): string[] {
  const problems: string[] = [];
  tables.forEach((t, j) => {
    const texts: Array<[string, string | undefined, string]> = [
      ['softDelete.condition', (t.softDelete as { condition?: string } | undefined)?.condition, 'one SQL condition'],
      ['where', t.where, 'one SQL condition'],
      ['query', t.query, 'one SELECT statement'],
    ];
    for (const [key, text, what] of texts) {
      const problem = text === undefined ? null : mysqlLexerProblem(text);
      if (problem) problems.push(`sources[${i}].tables[${j}].${key}: must be ${what}: ${problem}`);
    }
  });
  return problems;
}

function crossChecks(cfg: RawConfig): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  cfg.sources.forEach((s, i) => {
    if (names.has(s.name)) problems.push(`sources[${i}].name: source name ${s.name} is used twice`);
    names.add(s.name);
    const tables = new Set<string>();
    if (s.kind === 'debezium') problems.push(...debeziumProblems(s, i, cfg.web.host), ...debeziumRuleProblems(s.tables, i));
    if (s.kind === 'mysql') problems.push(...mysqlSqlProblems(s.tables, i));
    if (s.kind === 'postgres') {
      s.tables.forEach((t, j) => {
        const mode = t.mode ?? s.mode;
        if (mode === 'watermark' && t.watermark === undefined) {
          problems.push(`sources[${i}].tables[${j}].watermark: required in watermark mode (or set mode: cdc)`);
        }
        if (mode === 'cdc' && (t.watermark !== undefined || t.every !== undefined || t.cron !== undefined || t.safetyLag !== 0)) {
          problems.push(`sources[${i}].tables[${j}]: watermark, every, cron and safetyLag do not apply to mode cdc (the source's cdc settings do)`);
        }
      });
    }
    s.tables.forEach((t, j) => {
      if (tables.has(t.name)) problems.push(`sources[${i}].tables[${j}].name: table ${t.name} is configured twice`);
      tables.add(t.name);
    });
  });
  const targets = new Map<string, string>();
  cfg.sources.forEach((s, i) =>
    s.tables.forEach((t, j) => {
      const target = t.target ?? defaultTarget(s.name, t.name);
      const owner = `${s.name}.${t.name}`;
      const other = targets.get(target);
      if (other) problems.push(`sources[${i}].tables[${j}].target: ${target} is also the target of ${other}; set target explicitly`);
      if (target === cfg.destination.schemaChangesTarget) {
        problems.push(
          `sources[${i}].tables[${j}].target: ${target} receives the schema change records (destination.schemaChangesTarget); set another target`,
        );
      }
      targets.set(target, owner);
    }),
  );
  // Debezium tables carry only columns and masks; they keep their place so the paths stay right.
  problems.push(
    ...ruleProblems({
      ...cfg,
      sources: cfg.sources.map((s) =>
        s.kind === 'debezium' ? { mode: 'watermark' as const, tables: s.tables.map((t) => ({ masks: t.masks })) } : s,
      ),
    }),
  );
  const auth = cfg.web.auth;
  if ((auth.username === undefined) !== (auth.password === undefined)) {
    problems.push('web.auth: set both username and password for basic auth, or neither');
  }
  problems.push(...webAccessProblems(cfg.web.host, auth));
  return problems;
}

/**
 * Validates already-parsed YAML against the environment. Pure: no file or process access. `needs`: the values of
 * CONFIG_NEEDS the command uses (default all).
 */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv, refs: string[] = [], needs: readonly ConfigNeed[] = CONFIG_NEEDS): Config {
  const problems: string[] = [];
  const interpolated = dropEmpty(interpolate(raw, env, '', problems, refs, needs));
  const result = configSchema.safeParse(interpolated);
  if (!result.success) {
    // A key whose variable is unset was already reported; its "required" issue would only repeat it.
    const reported = new Set(problems.map((p) => p.slice(0, p.indexOf(':'))));
    for (const issue of result.error.issues) {
      const path = issuePath(issue.path);
      if (!reported.has(path)) problems.push(`${path}: ${issue.message}`);
    }
    // The dashboard's exposure is checked even when other keys are invalid: it is the one problem not to miss.
    const web = (interpolated as { web?: { host?: unknown; auth?: Record<string, unknown> } } | null)?.web;
    const given = (v: unknown): string | undefined => (typeof v === 'string' || typeof v === 'number' ? String(v) : undefined);
    const auth = { token: given(web?.auth?.token), username: given(web?.auth?.username), password: given(web?.auth?.password) };
    if (typeof web?.host === 'string') problems.push(...webAccessProblems(web.host, auth));
  } else {
    problems.push(...crossChecks(result.data), ...redisModeProblems(interpolated));
  }
  if (problems.length > 0 || !result.success) {
    throw new AppError('CONFIG_INVALID', `invalid configuration:\n  - ${[...new Set(problems)].join('\n  - ')}`, {
      details: { problems },
    });
  }
  const cfg = result.data;
  type AnySource = (typeof cfg.sources)[number];
  type DatabaseSource = z.output<typeof sourceSchema>;
  type RawDebeziumSource = z.output<typeof debeziumSourceSchema>;
  const isDebezium = (s: AnySource): s is RawDebeziumSource => s.kind === 'debezium';
  const isDatabase = (s: AnySource): s is DatabaseSource => s.kind !== 'debezium';
  return {
    ...cfg,
    redis: { ...cfg.redis, prefix: cfg.redis.cluster && !cfg.redis.prefix.startsWith('{') ? `{${cfg.redis.prefix}}` : cfg.redis.prefix },
    debezium: cfg.sources.filter(isDebezium).map((s) => ({
      ...s,
      tables: s.tables.map((t) => ({
        ...t,
        source: s.name,
        mode: 'debezium' as const,
        safetyLag: 0,
        schemaChanges: 'evolve' as const,
        onAddedColumn: 'keep' as const,
        target: t.target ?? defaultTarget(s.name, t.name),
      })),
    })),
    sources: cfg.sources.filter(isDatabase).map((s) => ({
      ...s,
      cdc: {
        ...cdcSchema.parse({}),
        ...s.cdc,
        publication: s.cdc?.publication ?? `pushsync_${s.name.toLowerCase().replace(/-/g, '_')}`,
        slot: s.cdc?.slot ?? `pushsync_${s.name.toLowerCase().replace(/-/g, '_')}`,
      },
      tables: s.tables.map((t) => ({
        ...t,
        mode: t.mode ?? s.mode,
        source: s.name,
        target: t.target ?? defaultTarget(s.name, t.name),
        every: t.cron === undefined ? (t.every ?? DEFAULT_EVERY_MS) : undefined,
      })),
    })),
  };
}

/**
 * Where a YAML syntax error starts. The parser reports an unclosed quote where it gave up, at the end of the file;
 * the quoted scalar that swallowed the rest of the file starts where the mistake is.
 */
function yamlErrorPlace(text: string, err: unknown): string {
  if (!(err instanceof YAMLParseError) || !err.linePos) return '';
  if (err.code === 'MISSING_CHAR') {
    const lines = new LineCounter();
    let start: number | undefined;
    for (const token of new Parser(lines.addNewLine).parse(text)) {
      if (token.type !== 'document') continue;
      CST.visit(token, (item) => {
        for (const node of [item.key, item.value]) {
          const quoted = node?.type === 'double-quoted-scalar' || node?.type === 'single-quoted-scalar';
          if (quoted && start === undefined && node.offset <= err.pos[0] && err.pos[0] <= node.offset + node.source.length) start = node.offset;
        }
      });
    }
    if (start !== undefined) {
      const { line, col } = lines.linePos(start);
      return ` at line ${line}, column ${col} (the quoted value that starts there is not closed)`;
    }
  }
  return ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}`;
}

export interface LoadOptions {
  /** The values of CONFIG_NEEDS the command uses. @defaultValue all of them */
  needs?: readonly ConfigNeed[];
}

/** Reads and validates the YAML config file. */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new AppError('CONFIG_INVALID', `cannot read config file ${path}: ${(cause as Error).message}`, { cause });
  }
  return resolveTransformPaths(parseConfigText(text, env, options, `config file ${path}`), dirname(path));
}

/** Validates the text of a config file (`what` names it in errors); transform paths stay as written. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv, options: LoadOptions = {}, what = 'the config'): Config {
  let raw: unknown;
  const protectedText = protectEnvRefs(text);
  try {
    raw = parseYaml(protectedText.text);
  } catch (cause) {
    throw new AppError('CONFIG_INVALID', `${what} is not valid YAML${yamlErrorPlace(protectedText.text, cause)}: ${(cause as Error).message}`, {
      cause,
    });
  }
  return parseConfig(raw, env, protectedText.refs, options.needs);
}

/** What a source needs to know of a configured table. */
export function tableSpec(t: TableConfig): TableSpec {
  return {
    source: t.source,
    name: t.name,
    primaryKey: t.primaryKey,
    watermark: t.watermark,
    softDelete: t.softDelete,
    ...(t.columns ? { columns: t.columns } : {}),
    ...(t.masks ? { masks: t.masks } : {}),
    ...(t.where !== undefined ? { where: t.where } : {}),
    ...(t.query !== undefined ? { query: t.query } : {}),
  };
}

/** `masking.key` as the bytes hash masks are keyed by; null when none is configured. */
export function maskingKeyOf(cfg: Pick<Config, 'masking'>): Buffer | null {
  return cfg.masking ? Buffer.from(cfg.masking.key, 'utf8') : null;
}

export function allTables(cfg: Config): TableConfig[] {
  return [...cfg.sources, ...cfg.debezium].flatMap((s) => s.tables);
}
