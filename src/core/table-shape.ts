/**
 * A relation's shape as the catalog describes it, and what changed between two readings of it. Shared by every
 * source and mode: watermark sources read the shape with one catalog query, change streams get it from their
 * relation messages; both hand it here to decide what changed, whether the destination can follow, and what to
 * announce. Pure: no driver, no queue.
 */

export interface ShapeColumn {
  /** As the catalog spells it. */
  name: string;
  /** The type as the catalog names it, with its modifier: `numeric(12,2)`, `character varying(20)`, `int unsigned`. */
  type: string;
  nullable?: boolean | undefined;
  /** Computed by the database (a generated column): it cannot be written, but it is read and sent like any other. */
  generated?: boolean | undefined;
  /**
   * The catalog's own number for the column when it survives a rename (Postgres `attnum`); absent where the
   * engine renumbers columns (MySQL's ordinal position). Only used to say that a drop and an add were a rename.
   */
  ordinal?: number | undefined;
}

export interface RelationShape {
  /**
   * What stays the same while the relation lives and differs once it is dropped and created again under the same
   * name (the Postgres oid; MySQL's table id). Null when the engine has none (then a re-creation is only seen by
   * its columns).
   */
  identity: string | null;
  /** In the table's column order. */
  columns: ShapeColumn[];
}

/** What the destination can do with the values of a column whose type changed. */
export type TypeVerdict =
  /** Every old value has the same value in the new type, and the destination can widen its column: nothing to do. */
  | 'widening'
  /** The new type holds less (shorter text, fewer digits, a smaller integer): values may have been altered by the ALTER and may no longer fit the destination's column. */
  | 'narrowing'
  /** A different kind of value (int to text, text to int, timestamp to timestamptz): the destination cannot follow in place. */
  | 'incompatible';

export type ShapeChange =
  | { kind: 'column_added'; column: string; type: string; generated: boolean; renamedFrom?: string | undefined }
  | { kind: 'column_dropped'; column: string; type: string; renamedTo?: string | undefined }
  | { kind: 'type_changed'; column: string; from: string; to: string; verdict: TypeVerdict; why: string }
  /** The relation was dropped and created again: a new table, whatever its columns. */
  | { kind: 'table_recreated'; from: string | null; to: string | null };

export type ShapeChangeKind = ShapeChange['kind'];

/** The text compared to tell two shapes apart: identity, then each column's name and type in order. */
export function shapeFingerprint(shape: RelationShape): string {
  return JSON.stringify([shape.identity, shape.columns.map((c) => [c.name, c.type])]);
}

export function sameShape(a: RelationShape, b: RelationShape): boolean {
  return shapeFingerprint(a) === shapeFingerprint(b);
}

/**
 * What changed from `before` to `after`. A rename is a drop plus an add (the destination sees a new column); when
 * the catalog's column numbers show it, the two carry `renamedTo` / `renamedFrom`. A relation with a new identity is
 * `table_recreated`, followed by the column differences of the new table against the old.
 */
export function diffShapes(before: RelationShape, after: RelationShape): ShapeChange[] {
  const changes: ShapeChange[] = [];
  const recreated = before.identity !== null && after.identity !== null && before.identity !== after.identity;
  if (recreated) changes.push({ kind: 'table_recreated', from: before.identity, to: after.identity });
  const old = new Map(before.columns.map((c) => [c.name, c]));
  const now = new Map(after.columns.map((c) => [c.name, c]));
  const dropped = before.columns.filter((c) => !now.has(c.name));
  const added = after.columns.filter((c) => !old.has(c.name));
  // Column numbers of a re-created table start over: they say nothing about renames then.
  const renameOf = (c: ShapeColumn, among: ShapeColumn[]): ShapeColumn | undefined =>
    recreated || c.ordinal === undefined ? undefined : among.find((o) => o.ordinal === c.ordinal);
  for (const c of dropped) {
    const to = renameOf(c, added);
    changes.push({ kind: 'column_dropped', column: c.name, type: c.type, ...(to ? { renamedTo: to.name } : {}) });
  }
  for (const c of added) {
    const from = renameOf(c, dropped);
    changes.push({
      kind: 'column_added',
      column: c.name,
      type: c.type,
      generated: c.generated === true,
      ...(from ? { renamedFrom: from.name } : {}),
    });
  }
  for (const c of after.columns) {
    const was = old.get(c.name);
    if (was && was.type !== c.type) {
      const { verdict, why } = classifyTypeChange(was.type, c.type);
      changes.push({ kind: 'type_changed', column: c.name, from: was.type, to: c.type, verdict, why });
    }
  }
  return changes;
}

/** A type name taken apart: its family, rank within the family, and modifiers. */
interface ParsedType {
  family: 'int' | 'uint' | 'float' | 'decimal' | 'varchar' | 'text' | 'char' | 'timestamp' | 'timestamptz' | 'time' | 'other';
  /** Integers: bytes; floats: bytes; text types: how much they hold (text = unbounded). */
  rank: number;
  /** varchar/char length; decimal precision; timestamp fractional digits. */
  size: number | null;
  /** decimal scale. */
  scale: number | null;
  /** The name without modifiers, for `other` types and array elements. */
  base: string;
  array: boolean;
}

const INT_BYTES: Record<string, number> = {
  tinyint: 1,
  smallint: 2,
  int2: 2,
  mediumint: 3,
  integer: 4,
  int: 4,
  int4: 4,
  bigint: 8,
  int8: 8,
};
const FLOAT_BYTES: Record<string, number> = { real: 4, float4: 4, float: 4, 'double precision': 8, float8: 8, double: 8 };
/** MySQL's text types, by how much they hold; Postgres `text` is unbounded. */
const TEXT_RANK: Record<string, number> = { tinytext: 1, text: 4, mediumtext: 5, longtext: 6 };
const MAX_TEXT = 6;

function parseType(written: string): ParsedType {
  let t = written.trim().toLowerCase();
  const array = t.endsWith('[]');
  if (array) t = t.replace(/(\[\])+$/, '');
  const unsigned = /\bunsigned\b/.test(t);
  t = t.replace(/\b(unsigned|zerofill)\b/g, '').trim();
  // `timestamp(3) with time zone`: the modifier sits inside the name.
  const mods = /\(([^)]*)\)/.exec(t);
  const args = mods ? mods[1]!.split(',').map((s) => Number(s.trim())) : [];
  const base = t
    .replace(/\([^)]*\)/, '')
    .replace(/\s+/g, ' ')
    .trim();
  const of = (family: ParsedType['family'], rank: number, size: number | null = null, scale: number | null = null): ParsedType => ({
    family,
    rank,
    size,
    scale,
    base,
    array,
  });
  if (base in INT_BYTES) return of(unsigned ? 'uint' : 'int', INT_BYTES[base]!);
  if (base in FLOAT_BYTES) return of('float', FLOAT_BYTES[base]!);
  if (base === 'numeric' || base === 'decimal') return of('decimal', 0, args[0] ?? null, args[1] ?? (args[0] !== undefined ? 0 : null));
  if (base === 'character varying' || base === 'varchar') return of('varchar', 0, args[0] ?? null);
  if (base in TEXT_RANK) return of('text', TEXT_RANK[base]!);
  if (base === 'character' || base === 'char' || base === 'bpchar') return of('char', 0, args[0] ?? 1);
  if (base === 'timestamp without time zone' || base === 'timestamp' || base === 'datetime') return of('timestamp', 0, args[0] ?? null);
  if (base === 'timestamp with time zone' || base === 'timestamptz') return of('timestamptz', 0, args[0] ?? null);
  if (base === 'time without time zone' || base === 'time') return of('time', 0, args[0] ?? null);
  return of('other', 0, args[0] ?? null, args[1] ?? null);
}

/** Fractional second digits of a timestamp without a modifier: 6 (both engines' most; MySQL's default is 0, which its catalog spells out). */
const fraction = (p: ParsedType): number => p.size ?? 6;

/**
 * Whether a column's new type can hold every value of its old one unchanged, in a form the destination can widen
 * its column to (DuckLake widens integers, floats and text; it cannot change a column's kind).
 *
 * Decided: `timestamp` → `timestamptz` is **incompatible**. The ALTER reads each old value in the server's time zone
 * (an implicit, session-dependent conversion), the values gain an offset, and the destination cannot turn a
 * TIMESTAMP column into TIMESTAMPTZ. The other way loses the offset. Both want a new target or a backfill.
 */
export function classifyTypeChange(from: string, to: string): { verdict: TypeVerdict; why: string } {
  const a = parseType(from);
  const b = parseType(to);
  const widening = (why: string) => ({ verdict: 'widening' as const, why });
  const narrowing = (why: string) => ({ verdict: 'narrowing' as const, why });
  const incompatible = (why: string) => ({ verdict: 'incompatible' as const, why });
  if (a.array !== b.array) return incompatible(`${a.array ? 'an array becomes a single value' : 'a single value becomes an array'}`);
  const ints = (p: ParsedType): boolean => p.family === 'int' || p.family === 'uint';
  if (ints(a) && ints(b)) {
    // An unsigned integer fits a signed one only with a byte to spare; a signed one never fits an unsigned one.
    const room = b.rank - a.rank - (a.family === 'uint' && b.family === 'int' ? 1 : 0);
    if (a.family === 'int' && b.family === 'uint') return incompatible('negative values cannot be stored unsigned');
    return room >= 0 ? widening('a larger integer holds every value') : narrowing('a smaller integer cannot hold every value');
  }
  if (ints(a) && b.family === 'decimal') {
    const digits = a.rank >= 8 ? 20 : a.rank >= 4 ? 10 : a.rank >= 3 ? 8 : a.rank >= 2 ? 5 : 3;
    if (b.size === null || b.size - (b.scale ?? 0) >= digits) return widening('the decimal holds every integer value exactly');
    return narrowing(`decimal(${b.size},${b.scale ?? 0}) has fewer integer digits than ${from} values can have`);
  }
  if (a.family === 'float' && b.family === 'float') {
    return b.rank >= a.rank ? widening('double precision holds every single-precision value') : narrowing('single precision rounds double values');
  }
  if (a.family === 'decimal' && b.family === 'decimal') {
    if (b.size === null) return widening('an unconstrained decimal holds every value exactly');
    if (a.size === null) return narrowing(`decimal(${b.size},${b.scale}) cannot hold every value of an unconstrained decimal`);
    const [aInt, bInt] = [a.size - (a.scale ?? 0), b.size - (b.scale ?? 0)];
    if ((b.scale ?? 0) < (a.scale ?? 0)) return narrowing(`the scale went down from ${a.scale} to ${b.scale}: the ALTER rounded the values`);
    if (bInt < aInt) return narrowing(`integer digits went down from ${aInt} to ${bInt}`);
    return widening('more digits hold every value exactly');
  }
  const texts = (p: ParsedType): boolean => p.family === 'varchar' || p.family === 'text';
  if (texts(a) && texts(b)) {
    const holds = (p: ParsedType): number => (p.family === 'text' ? p.rank : p.size === null ? MAX_TEXT : 0);
    if (b.family === 'varchar' && b.size !== null) {
      if (a.family === 'varchar' && a.size !== null && b.size >= a.size) return widening('longer text holds every value');
      return narrowing(`text limited to ${b.size} characters cannot hold every value`);
    }
    if (a.family === 'varchar' && a.size !== null) return widening('unlimited text holds every value');
    return holds(b) >= holds(a) ? widening('a larger text type holds every value') : narrowing('a smaller text type cannot hold every value');
  }
  if (a.family === 'char' && b.family === 'char') {
    return incompatible('blank-padded text changes its values when its length changes (padding added or cut)');
  }
  if ((a.family === 'timestamp' || a.family === 'timestamptz' || a.family === 'time') && a.family === b.family) {
    return fraction(b) >= fraction(a)
      ? widening('more fractional digits hold every value')
      : narrowing(`fractional seconds went down from ${fraction(a)} to ${fraction(b)} digits: the ALTER rounded the values`);
  }
  if (a.family === 'timestamp' && b.family === 'timestamptz') {
    return incompatible(
      'timestamps without a time zone were read in the server time zone and now carry an offset; the destination cannot turn TIMESTAMP into TIMESTAMPTZ',
    );
  }
  if (a.family === 'timestamptz' && b.family === 'timestamp') return incompatible('timestamps lose their time zone');
  if (a.family === 'other' && b.family === 'other' && a.base === b.base) {
    if (a.size !== null && b.size !== null && b.size < a.size) return narrowing(`the type's modifier went down from ${a.size} to ${b.size}`);
    return widening('the same type with a wider modifier');
  }
  return incompatible(`values change from ${from} to ${to}, which the destination cannot widen a column into`);
}

/**
 * What each change says downstream, in `bronze.pushsync_schema_changes` (one record per change) and in status. The
 * field names are the record's columns.
 */
export interface SchemaChangeAnnouncement {
  source: string;
  /** The table as configured. */
  table: string;
  kind: ShapeChangeKind;
  /** Null for `table_recreated`. */
  column: string | null;
  old_type: string | null;
  new_type: string | null;
  /** For `type_changed`: widening, narrowing or incompatible; else null. */
  verdict: TypeVerdict | null;
  /** One sentence: what changed and what to do about it. */
  note: string;
  /** Whether the column is sent under the table's column rules (null for `table_recreated`). */
  sent: boolean | null;
  /** ISO-8601, when pushsync saw the change. */
  detected_at: string;
  /**
   * The `_ordering` from which every record of the table has the new shape: the position reading had reached when
   * the change was seen (records sent after `detected_at` have it too, whatever their ordering). Null when the table
   * had not been read yet.
   */
  applies_from: string | null;
}

/** Whether a change needs someone to act (logged at warning level): narrowing and incompatible type changes. */
export function needsAttention(change: ShapeChange): boolean {
  return change.kind === 'type_changed' && change.verdict !== 'widening';
}

/** One sentence per change, naming the column and, where the destination cannot follow, what to do. */
export function changeNote(change: ShapeChange, where: string): string {
  switch (change.kind) {
    case 'column_added':
      return change.renamedFrom !== undefined
        ? `column ${change.column} (${change.type}) is ${change.renamedFrom} renamed: sent under its new name from now on; older records keep the old name`
        : `column ${change.column} (${change.type}${change.generated ? ', generated' : ''}) added: sent from the next row read; older records lack it until they change`;
    case 'column_dropped':
      return change.renamedTo !== undefined
        ? `column ${change.column} renamed to ${change.renamedTo}: no longer sent under its old name`
        : `column ${change.column} dropped: no longer sent; older records keep their values`;
    case 'table_recreated':
      return `${where} was dropped and created again: read again from its start as a new table`;
    case 'type_changed':
      if (change.verdict === 'widening') return `column ${change.column} widened from ${change.from} to ${change.to} (${change.why})`;
      return (
        `column ${change.column} changed from ${change.from} to ${change.to}, ${change.verdict === 'narrowing' ? 'a narrowing' : 'an incompatible'} change: ${change.why}; ` +
        `values now arrive as ${change.to}: send the table to a new target (and backfill it), or set schemaChanges: freeze to hold such changes until accepted`
      );
  }
}

/** The announcement of one change. */
export function announcement(
  change: ShapeChange,
  at: { source: string; table: string; detectedAt: string; appliesFrom: string | null; sent: (column: string) => boolean },
): SchemaChangeAnnouncement {
  const column = change.kind === 'table_recreated' ? null : change.column;
  return {
    source: at.source,
    table: at.table,
    kind: change.kind,
    column,
    old_type: change.kind === 'type_changed' ? change.from : change.kind === 'column_dropped' ? change.type : null,
    new_type: change.kind === 'type_changed' ? change.to : change.kind === 'column_added' ? change.type : null,
    verdict: change.kind === 'type_changed' ? change.verdict : null,
    note: changeNote(change, `${at.source}.${at.table}`),
    sent: column === null ? null : change.kind === 'column_dropped' ? false : at.sent(column),
    detected_at: at.detectedAt,
    applies_from: at.appliesFrom,
  };
}
