import { AppError } from './errors.js';
import { METADATA_FIELDS } from './record.js';

/**
 * What leaves the network, per table: which columns, with which masks. Sources resolve the configured names against
 * their catalog and describe each column's kind; the plan (and every refusal) is decided here, the same for every
 * source engine.
 */

/** What a column's outgoing value is, as far as masks care. */
export type ValueKind = 'text' | 'number' | 'boolean' | 'timestamp' | 'date' | 'nested' | 'other';

export type TruncateUnit = 'day' | 'month' | 'year';

export type Mask =
  /** HMAC-SHA-256 of the value's outgoing text, keyed by `masking.key`, lower-case hex. */
  | { kind: 'hash' }
  | { kind: 'null' }
  /** A fixed string instead of the value. */
  | { kind: 'redact'; text: string }
  /** The first `chars` characters (Unicode code points) of a text value. */
  | { kind: 'truncate'; chars: number }
  /** A timestamp or date cut down to the start of its day, month or year (UTC). */
  | { kind: 'truncateTime'; unit: TruncateUnit }
  /** Every match of a JavaScript regular expression in the value's outgoing text replaced by `with`, as written. */
  | { kind: 'replace'; pattern: string; with: string };

export interface ColumnSelection {
  include?: string[] | undefined;
  exclude?: string[] | undefined;
}

/** A column that leaves, in record order. */
export interface OutgoingColumn {
  name: string;
  /** The source's type name. */
  type: string;
  mask: Mask | null;
  /** Where the mask is computed: in the source's SQL (exact built-ins) or by pushsync once per value. */
  appliedIn: 'source' | 'pipeline' | null;
  primaryKey: boolean;
}

export interface PlannedColumn {
  name: string;
  type: string;
  kind: ValueKind;
}

export interface PlanInput {
  /** `source.table`, for messages. */
  table: string;
  /** Every column the table (or query) has, in order. */
  columns: PlannedColumn[];
  primaryKey: string[];
  watermark: string | null;
  selection?: ColumnSelection | undefined;
  masks?: Record<string, Mask> | undefined;
  /** The catalog name a configured name refers to (the source's folding and quoting rules), or null. */
  resolve: (written: string) => string | null;
  /**
   * True for a configured name whose column the table had when it was described before and has no more (dropped or
   * renamed while pushsync runs): it is left out instead of failing every read. Absent: every unknown name is an error.
   */
  vanished?: ((written: string) => boolean) | undefined;
}

export interface ColumnPlan {
  /** Columns that leave, in table order, each with its mask. */
  leaving: Array<PlannedColumn & { mask: Mask | null }>;
  /** Columns that never leave (they may still be read for keys, ordering, soft deletes or filters). */
  withheld: PlannedColumn[];
}

/** Why `mask` cannot apply to a value of `kind`, or null when it can. */
export function maskProblem(mask: Mask, kind: ValueKind): string | null {
  switch (mask.kind) {
    case 'hash':
    case 'null':
    case 'redact':
      return null;
    case 'truncate':
      return kind === 'text' ? null : `truncate: ${mask.chars} applies to text columns`;
    case 'truncateTime':
      return kind === 'timestamp' || kind === 'date' ? null : `truncate: ${mask.unit} applies to timestamp and date columns`;
    case 'replace':
      return kind === 'nested' ? 'replace applies to scalar values, not to JSON, arrays or composite values' : null;
  }
}

/** The mask as a reviewer reads it, e.g. `hashed (HMAC-SHA-256, hex)`. */
export function describeMask(mask: Mask | null): string {
  if (mask === null) return 'as is';
  switch (mask.kind) {
    case 'hash':
      return 'hashed (HMAC-SHA-256 keyed by masking.key, hex)';
    case 'null':
      return 'always null';
    case 'redact':
      return `redacted to ${JSON.stringify(mask.text)}`;
    case 'truncate':
      return `truncated to ${mask.chars} characters`;
    case 'truncateTime':
      return `truncated to the ${mask.unit} (UTC)`;
    case 'replace':
      return `matches of /${mask.pattern}/g replaced by ${JSON.stringify(mask.with)}`;
  }
}

/**
 * Decides which columns leave and checks every rule against the table as it is. All problems are reported at once,
 * as a configuration error naming the table (and listing its columns when a name is unknown).
 */
export function planColumns(input: PlanInput): ColumnPlan {
  const problems: string[] = [];
  const known = (written: string, key: string): string | null => {
    const name = input.resolve(written);
    if (name === null && !input.vanished?.(written)) problems.push(`${key}: no column ${written}`);
    return name;
  };
  let leavingNames: Set<string>;
  const { include, exclude } = input.selection ?? {};
  if (include !== undefined) {
    leavingNames = new Set(include.map((c) => known(c, 'columns.include')).filter((c): c is string => c !== null));
  } else {
    const excluded = new Set((exclude ?? []).map((c) => known(c, 'columns.exclude')).filter((c): c is string => c !== null));
    leavingNames = new Set(input.columns.map((c) => c.name).filter((c) => !excluded.has(c)));
  }
  const masks = new Map<string, Mask>();
  for (const [written, mask] of Object.entries(input.masks ?? {})) {
    const key = `masks.${written}`;
    const name = known(written, key);
    if (name === null) continue;
    const column = input.columns.find((c) => c.name === name)!;
    if (!leavingNames.has(name)) {
      problems.push(`${key}: column ${name} does not leave (see columns), so it cannot be masked`);
    } else if (name === input.watermark) {
      problems.push(`${key}: the watermark column cannot be masked (_ordering is derived from it)`);
    } else if (input.primaryKey.includes(name) && mask.kind !== 'hash') {
      problems.push(`${key}: a primary-key column can only be masked with hash (other masks make keys collide)`);
    } else {
      const problem = maskProblem(mask, column.kind);
      if (problem) problems.push(`${key}: ${problem}; ${name} is ${column.type}`);
      else masks.set(name, mask);
    }
  }
  if (problems.length === 0 && leavingNames.size === 0) problems.push('columns: no column would leave');
  if (problems.length > 0) {
    const unknown = problems.some((p) => p.includes(': no column '));
    const listing = unknown ? `; the columns of ${input.table} are: ${input.columns.map((c) => c.name).join(', ')}` : '';
    throw new AppError('CONFIG_INVALID', `${input.table}: ${problems.join('; ')}${listing}`, { details: { problems } });
  }
  const clash = [...leavingNames].find((c) => (METADATA_FIELDS as readonly string[]).includes(c));
  if (clash) {
    throw new AppError(
      'SOURCE_SCHEMA',
      `${input.table}: column "${clash}" collides with pushsync's metadata field of the same name; exclude or rename it in a view`,
    );
  }
  return {
    leaving: input.columns.filter((c) => leavingNames.has(c.name)).map((c) => ({ ...c, mask: masks.get(c.name) ?? null })),
    withheld: input.columns.filter((c) => !leavingNames.has(c.name)),
  };
}
