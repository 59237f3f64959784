import { readFileSync } from 'node:fs';
import { CronExpressionParser } from 'cron-parser';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { AppError } from './core/errors.js';
import { parseDuration } from './core/duration.js';
import { defaultTarget, parseQualifiedName } from './core/identifiers.js';
import { STREAM_LIMITS } from './core/batching.js';
import { conditionProblem } from './core/sql-text.js';
import { MIN_TOKEN_LENGTH, isLoopback, webAccessProblems } from './core/web-access.js';
import type { TableSpec } from './core/ports.js';

/**
 * The configuration schema and its loader: the only code that reads process.env. Every problem is reported at
 * once, each with its key path and what would be valid.
 */

/** Strings that may arrive as numbers from `${VAR}` (a numeric token or password). */
const text = z.union([z.string(), z.number()]).transform(String);

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

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

const qualifiedName = z.string().min(1).refine(
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

/** 127.0.0.0/8, ::1 and localhost, as the WHATWG URL parser spells them (it normalises `127.1` and `[0::1]`). */
function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

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
  if (isLoopbackHost(parsed.hostname) || allowInsecureHttp) return undefined;
  return (
    `must be an https: URL: http: to ${parsed.hostname}, which is not loopback (127.0.0.0/8, ::1, localhost), would send the API key ` +
    'unencrypted; use https:, or set destination.allowInsecureHttp: true for a network you trust'
  );
}

const tableSchema = z
  .object({
    name: qualifiedName,
    primaryKey: z.array(z.string().min(1)).min(1).optional(),
    /** `watermark` polls by a watermark column; `cdc` streams changes from the source's replication slot. */
    mode: z.enum(['watermark', 'cdc']).optional(),
    watermark: z.string().min(1).optional(),
    every: duration.optional(),
    cron: cron.optional(),
    batchRows: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(5000),
    safetyLag: duration.default(0),
    /** Periodic primary-key reconciliation that sends deletes for rows gone from the source (watermark mode). */
    reconcile: z
      .object({
        every: duration,
        /** How long to wait for transactions open at the check before sending deletes (else: next run). */
        maxWait: duration.default(300_000),
      })
      .strict()
      .optional(),
    softDelete: z
      .union([
        z.object({ column: z.string().min(1) }).strict(),
        z.object({ condition: sqlCondition }).strict(),
      ], { message: 'use { column: deleted_at } or { condition: "status = \'deleted\'" }' })
      .optional(),
    target: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/, 'must be schema.table using letters, digits and _')
      .optional(),
  })
  .strict()
  .refine((t) => !(t.every !== undefined && t.cron !== undefined), { message: 'set either every or cron, not both' });

const slotName = z.string().regex(/^[a-z0-9_]{1,63}$/, 'use 1-63 lower-case letters, digits and _');

const cdcSchema = z
  .object({
    publication: slotName.optional(),
    slot: slotName.optional(),
    /** How often the stream reader is started when none is running. */
    every: duration.default(1000),
    /** A reader hands over after this long, so work moves between processes and the dashboard shows progress. */
    maxRunTime: duration.default(60_000),
    /** Keys per push job. */
    batchKeys: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(5000),
    /** Changes are enqueued at least this often while the stream is busy. */
    flushInterval: duration.default(500),
    /** Log a warning when the slot holds back more WAL than this. */
    lagWarningBytes: z.number().int().min(0).default(1024 * 1024 * 1024),
  })
  .strict();

const sourceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'use letters, digits, _ and -'),
    kind: z.literal('postgres'),
    url: z.string().min(1),
    poolSize: z.number().int().min(1).max(64).default(4),
    statementTimeout: duration.default(300_000),
    /** Default mode for the source's tables. */
    mode: z.enum(['watermark', 'cdc']).default('watermark'),
    cdc: cdcSchema.optional(),
    tables: z.array(tableSchema).min(1),
  })
  .strict();

/** A Debezium change stream pushed to pushsync (HTTP) or read from Debezium Server's Redis sink. */
const debeziumSourceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'use letters, digits, _ and -'),
    kind: z.literal('debezium'),
    /** POST /ingest/debezium on web.port (role ingest). */
    http: z.object({ token: text.optional() }).strict().optional(),
    redisStreams: z
      .object({
        url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://'),
        streams: z.array(z.string().min(1)).min(1),
        group: z.string().min(1).default('pushsync'),
        /** Entries read per XREADGROUP call. */
        batch: z.number().int().min(1).max(10_000).default(500),
        /** Pending entries of a consumer idle this long are claimed by another (XAUTOCLAIM). */
        claimIdle: duration.default(30_000),
        /** The sink's `null.value`: entries with this value are tombstones. */
        nullValue: z.string().default('default'),
      })
      .strict()
      .optional(),
    /** Bytes of undelivered events held in Redis; past it, ingest answers 429 and stream reading pauses. */
    maxBufferedBytes: z.number().int().min(1024 * 1024).default(256 * 1024 * 1024),
    /** Buffered events are cut into push jobs once batchRows are waiting or the oldest has waited this long. */
    flushInterval: duration.default(1000),
    unavailableValue: z.string().min(1).default('__debezium_unavailable_value'),
    binaryHandling: z.enum(['bytes', 'base64', 'base64-url-safe', 'hex']).default('bytes'),
    tables: z
      .array(
        z
          .object({
            name: qualifiedName,
            primaryKey: z.array(z.string().min(1)).min(1).optional(),
            target: tableSchema.shape.target,
            batchRows: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(5000),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

/** By kind: a Debezium source, else a database source (whose schema reports an unknown kind with every other problem). */
const anySourceSchema = z.unknown().transform((v, ctx): z.output<typeof sourceSchema> | z.output<typeof debeziumSourceSchema> => {
  const kind = typeof v === 'object' && v !== null ? (v as { kind?: unknown }).kind : undefined;
  const parsed = (kind === 'debezium' ? debeziumSourceSchema : sourceSchema).safeParse(v);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
  return z.NEVER;
});

const configSchema = z
  .object({
    redis: z
      .object({
        url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').default('redis://127.0.0.1:6379'),
        prefix: z.string().regex(/^[A-Za-z0-9_-]+$/, 'use letters, digits, _ and -').default('pushsync'),
      })
      .strict()
      .default({ url: 'redis://127.0.0.1:6379', prefix: 'pushsync' }),
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
        apiKey: z
          .union([z.string(), z.number()], {
            error: (iss) => (iss.input === undefined ? 'is required: set destination.apiKey, e.g. apiKey: ${DEFINITE_API_KEY}' : 'must be a string'),
          })
          .transform(String)
          .pipe(z.string().min(1, 'is empty: set DEFINITE_API_KEY or destination.apiKey')),
        timeout: duration.default(60_000),
        compression: z.enum(['none', 'gzip']).default('none'),
        wait: z.boolean().default(false),
        tags: z.record(z.string(), z.string()).default({}),
        attempts: z.number().int().min(1).max(100).default(12),
        backoff: z
          .object({
            base: duration.default(1000),
            cap: duration.default(300_000),
            jitter: z.number().min(0).max(1).default(0.5),
          })
          .strict()
          .default({ base: 1000, cap: 300_000, jitter: 0.5 }),
        maxRows: z.number().int().min(1).max(STREAM_LIMITS.maxRows).default(STREAM_LIMITS.maxRows),
        maxBytes: z.number().int().min(1024).max(STREAM_LIMITS.maxBytes).default(STREAM_LIMITS.maxBytes),
        concurrency: z.number().int().min(1).max(256).default(4),
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
    extract: z
      .object({
        concurrency: z.number().int().min(1).max(64).default(2),
        maxPendingBatches: z.number().int().min(1).default(200),
        /** How long a table's (or slot's) reader lease outlives a reader that died. */
        leaseTtl: duration.default(30_000),
        attempts: z.number().int().min(1).max(100).default(5),
      })
      .strict()
      .default({ concurrency: 2, maxPendingBatches: 200, attempts: 5, leaseTtl: 30_000 }),
    sources: z.array(anySourceSchema).min(1),
    web: z
      .object({
        port: z.number().int().min(0).max(65535).default(3000),
        host: z.string().default('127.0.0.1'),
        /** Bull Board shows queues and jobs without retry, clean, add, promote, remove or pause controls. */
        readOnly: z.boolean().default(false),
        auth: z
          .object({
            token: text.optional(),
            username: text.optional(),
            password: text.optional(),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({ port: 3000, host: '127.0.0.1', readOnly: false, auth: {} }),
    log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).strict().default({ level: 'info' }),
  })
  .strict();

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

function resolveRef(ref: string, env: NodeJS.ProcessEnv, path: string, problems: string[]): string {
  const [, name, fallback] = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/.exec(ref)!;
  const v = env[name!];
  if (v !== undefined && v !== '') return v;
  if (fallback !== undefined) return fallback;
  problems.push(`${path || '(root)'}: environment variable ${name} is not set (write \${${name}:-default} to allow a default)`);
  return '';
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` (or their placeholders) in every string value; unset variables without
 * default are errors. A value that is one reference alone and resolves to a number or boolean becomes one, so
 * `port: ${PORT:-3000}` works.
 */
function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: string, problems: string[], refs: string[]): unknown {
  if (typeof value === 'string') {
    const whole = /^PUSHSYNC_ENV_REF_(\d+)_$/.exec(value) ?? /^\$\{[^}]*\}$/.exec(value);
    const out = value
      .replace(PLACEHOLDER, (_m, i: string) => resolveRef(refs[Number(i)]!, env, path, problems))
      .replace(ENV_REF, (m) => resolveRef(m, env, path, problems));
    if (whole) {
      // Only when the number prints back identically: a token such as 007 or a 20-digit key must stay text.
      if (/^-?\d+(\.\d+)?$/.test(out) && String(Number(out)) === out) return Number(out);
      if (out === 'true' || out === 'false') return out === 'true';
    }
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${path}[${i}]`, problems, refs));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, env, path ? `${path}.${k}` : k, problems, refs);
    return out;
  }
  return value;
}

/** Empty strings from `${VAR:-}` mean "not set" for optional keys. */
function dropEmpty(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropEmpty);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== '').map(([k, v]) => [k, dropEmpty(v)]));
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
      problems.push(`sources[${i}].http.token: must be at least ${MIN_TOKEN_LENGTH} characters because web.host ${host} is not loopback; generate one with: openssl rand -hex 16`);
    }
  }
  return problems;
}

function crossChecks(cfg: RawConfig): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  cfg.sources.forEach((s, i) => {
    if (names.has(s.name)) problems.push(`sources[${i}].name: source name ${s.name} is used twice`);
    names.add(s.name);
    const tables = new Set<string>();
    if (s.kind === 'debezium') problems.push(...debeziumProblems(s, i, cfg.web.host));
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
      targets.set(target, owner);
    }),
  );
  const auth = cfg.web.auth;
  if ((auth.username === undefined) !== (auth.password === undefined)) {
    problems.push('web.auth: set both username and password for basic auth, or neither');
  }
  problems.push(...webAccessProblems(cfg.web.host, auth));
  return problems;
}

/** Validates already-parsed YAML against the environment. Pure: no file or process access. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv, refs: string[] = []): Config {
  const problems: string[] = [];
  const interpolated = dropEmpty(interpolate(raw, env, '', problems, refs));
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
    problems.push(...crossChecks(result.data));
  }
  if (problems.length > 0 || !result.success) {
    throw new AppError('CONFIG_INVALID', `invalid configuration:\n  - ${[...new Set(problems)].join('\n  - ')}`, {
      details: { problems },
    });
  }
  const cfg = result.data;
  return {
    ...cfg,
    debezium: cfg.sources
      .filter((s) => s.kind === 'debezium')
      .map((s) => ({
        ...s,
        tables: s.tables.map((t) => ({ ...t, source: s.name, mode: 'debezium' as const, safetyLag: 0, target: t.target ?? defaultTarget(s.name, t.name) })),
      })),
    sources: cfg.sources.filter((s) => s.kind === 'postgres').map((s) => ({
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

/** Reads and validates the YAML config file. */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new AppError('CONFIG_INVALID', `cannot read config file ${path}: ${(cause as Error).message}`, { cause });
  }
  let raw: unknown;
  const protectedText = protectEnvRefs(text);
  try {
    raw = parseYaml(protectedText.text);
  } catch (cause) {
    const where = cause instanceof YAMLParseError && cause.linePos ? ` at line ${cause.linePos[0].line}` : '';
    throw new AppError('CONFIG_INVALID', `config file ${path} is not valid YAML${where}: ${(cause as Error).message}`, { cause });
  }
  return parseConfig(raw, env, protectedText.refs);
}

/** What a source needs to know of a configured table. */
export function tableSpec(t: TableConfig): TableSpec {
  return { source: t.source, name: t.name, primaryKey: t.primaryKey, watermark: t.watermark, softDelete: t.softDelete };
}

export function allTables(cfg: Config): TableConfig[] {
  return [...cfg.sources, ...cfg.debezium].flatMap((s) => s.tables);
}
