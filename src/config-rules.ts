import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { maskRegExp } from './core/masks.js';
import type { Mask } from './core/rules.js';
import { conditionProblem, selectProblem } from './core/sql-text.js';

/**
 * The config schema of what leaves the network: the top-level `masking` section and the per-table options
 * `columns`, `masks`, `where`, `onFilteredOut`, `transform` and `query`. Part of config.ts's schema; kept apart
 * so the table options read as one subject.
 */

/** The shortest `masking.key` accepted: an HMAC key should carry at least 128 bits. */
export const MIN_MASKING_KEY_CHARS = 16;

export const maskingSchema = z
  .object({
    /** The secret of `hash` masks and of the encryption of masked keys in Redis. Never logged or stored. */
    key: z
      .union([z.string(), z.number()])
      .transform(String)
      .pipe(z.string().min(MIN_MASKING_KEY_CHARS, `must be at least ${MIN_MASKING_KEY_CHARS} characters (e.g. openssl rand -hex 32)`)),
  })
  .strict();

const names = z.array(z.string().min(1)).min(1);

const MASK_FORMS = 'use hash, null, { redact: "***" }, { truncate: 3 }, { truncate: day | month | year } or { replace: { pattern: "…", with: "*" } }';

/** A mask as written into its core form; `null` when it is not one (the reason is in `problems`). */
function readMask(v: unknown, problems: string[]): Mask | null {
  if (v === 'hash') return { kind: 'hash' };
  if (v === null || v === 'null') return { kind: 'null' };
  const entries = typeof v === 'object' && !Array.isArray(v) ? Object.entries(v as object) : [];
  if (entries.length !== 1) return (problems.push(MASK_FORMS), null);
  const [form, arg] = entries[0]!;
  if (form === 'redact' && typeof arg === 'string') return { kind: 'redact', text: arg };
  if (form === 'truncate' && typeof arg === 'number' && Number.isInteger(arg) && arg >= 0) return { kind: 'truncate', chars: arg };
  if (form === 'truncate' && (arg === 'day' || arg === 'month' || arg === 'year')) return { kind: 'truncateTime', unit: arg };
  if (form === 'replace' && typeof arg === 'object' && arg !== null && !Array.isArray(arg)) {
    const { pattern, with: replacement = '', ...rest } = arg as Record<string, unknown>;
    if (Object.keys(rest).length > 0 || typeof pattern !== 'string' || pattern === '' || typeof replacement !== 'string') {
      return (problems.push('replace takes { pattern: "<regular expression>", with: "<text>" }'), null);
    }
    try {
      maskRegExp(pattern);
    } catch (err) {
      return (problems.push(`replace.pattern is not a valid regular expression: ${(err as Error).message}`), null);
    }
    return { kind: 'replace', pattern, with: replacement };
  }
  if (form === 'truncate') return (problems.push('truncate takes a number of characters or day, month or year'), null);
  return (problems.push(MASK_FORMS), null);
}

/** A mask as written: `hash`, `null`, `{ redact: "***" }`, `{ truncate: 3 }`, `{ truncate: month }`, `{ replace: { pattern, with } }`. */
const maskSchema = z.unknown().transform((v, ctx): Mask => {
  const problems: string[] = [];
  const mask = readMask(v, problems);
  if (mask === null) {
    for (const message of problems) ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  }
  return mask;
});

const sqlCondition = z.string().superRefine((v, ctx) => {
  const problem = conditionProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: `must be one SQL condition: ${problem}` });
});

const sqlSelect = z.string().superRefine((v, ctx) => {
  const problem = selectProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: `must be one SELECT statement: ${problem}` });
});

/** Spread into the table schema of config.ts. */
export const tableRuleOptions = {
  /** Which columns leave: `{ include: [...] }` (the safe choice) or `{ exclude: [...] }`. */
  columns: z
    .union([z.object({ include: names }).strict(), z.object({ exclude: names }).strict()], {
      message: 'use { include: [col, ...] } or { exclude: [col, ...] }',
    })
    .optional(),
  masks: z.record(z.string().min(1), maskSchema).optional(),
  /** Rows that do not match this SQL condition never leave. */
  where: sqlCondition.optional(),
  /** What a row that matched and no longer matches becomes: a key-only delete record, or nothing. */
  onFilteredOut: z.enum(['delete', 'skip']).optional(),
  /** An ES module whose default export receives each outgoing record. Relative to the config file. */
  transform: z.string().min(1).optional(),
  /** A SELECT read in place of a table, with primaryKey and watermark naming its output columns. */
  query: sqlSelect.optional(),
};

interface RuledTable {
  mode?: 'watermark' | 'cdc' | undefined;
  primaryKey?: string[] | undefined;
  watermark?: string | undefined;
  masks?: Record<string, Mask> | undefined;
  where?: string | undefined;
  onFilteredOut?: 'delete' | 'skip' | undefined;
  transform?: string | undefined;
  query?: string | undefined;
}

interface RuledConfig {
  masking?: { key: string } | undefined;
  sources: Array<{ mode: 'watermark' | 'cdc'; tables: RuledTable[] }>;
}

/** Problems only the whole config shows, each with its key path. */
export function ruleProblems(cfg: RuledConfig): string[] {
  const problems: string[] = [];
  cfg.sources.forEach((s, i) =>
    s.tables.forEach((t, j) => {
      const at = `sources[${i}].tables[${j}]`;
      const hashed = Object.entries(t.masks ?? {}).find(([, m]) => m.kind === 'hash');
      if (hashed && cfg.masking === undefined)
        problems.push(`${at}.masks.${hashed[0]}: hash needs masking.key (e.g. masking: { key: \${PSEUDONYM_KEY} })`);
      if (t.onFilteredOut !== undefined && t.where === undefined && t.transform === undefined) {
        problems.push(`${at}.onFilteredOut: applies only to a table with where or transform`);
      }
      if (t.query !== undefined) {
        if ((t.mode ?? s.mode) === 'cdc') problems.push(`${at}.query: a query table is read by its watermark; it cannot be in mode cdc`);
        if (t.primaryKey === undefined) problems.push(`${at}.primaryKey: required for a query table (output columns that are unique and not null)`);
      }
    }),
  );
  return problems;
}

/** Transform paths are relative to the config file's directory; returns the config with absolute paths. */
export function resolveTransformPaths<C extends { sources: Array<{ tables: Array<{ transform?: string | undefined }> }> }>(cfg: C, dir: string): C {
  return {
    ...cfg,
    sources: cfg.sources.map((s) => ({
      ...s,
      tables: s.tables.map((t) => (t.transform === undefined || isAbsolute(t.transform) ? t : { ...t, transform: resolve(dir, t.transform) })),
    })),
  };
}
