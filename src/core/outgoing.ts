import { AppError } from './errors.js';
import { KeySealer } from './key-seal.js';
import { compileMask, maskMembers, type ValueMask } from './masks.js';
import { objectMembers } from './json-scan.js';
import type { Cursor, KeyRange, Phase, Position } from './cursor.js';
import type { KeyedRow, NextRange, ReadOptions, RangeEnd, Source, SourceRow, TableReader, TableShape, TableSpec } from './ports.js';

/**
 * A source whose rows come out with every mask applied and whose keys go into Redis sealed when they are masked.
 * The adapter builds SQL that reads only the leaving columns and computes the masks it has exact built-ins for; this
 * wrapper computes the rest (hash, replace, …) once per value, before a record exists anywhere else, and seals
 * primary-key values of tables whose key is masked, so that push jobs, cursors and reconciliation sets never hold
 * them raw. Tables without such rules get the adapter's reader unchanged.
 */
export interface OutgoingOptions {
  /** `masking.key` as bytes; null when none is configured. */
  maskingKey: Buffer | null;
}

function hasRules(spec: TableSpec): boolean {
  return (
    spec.columns !== undefined ||
    (spec.masks !== undefined && Object.keys(spec.masks).length > 0) ||
    spec.where !== undefined ||
    spec.query !== undefined
  );
}

export class OutgoingSource implements Source {
  /** Wrapped readers by the adapter's reader: a table whose shape changed gets a new reader, and so a new wrapper. */
  private readonly readers = new WeakMap<TableReader, TableReader>();

  constructor(
    private readonly inner: Source,
    private readonly options: OutgoingOptions,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  async table(spec: TableSpec): Promise<TableReader> {
    const inner = await this.inner.table(spec);
    let reader = this.readers.get(inner);
    if (!reader) {
      reader = this.wrap(inner, spec);
      this.readers.set(inner, reader);
    }
    return reader;
  }

  private wrap(reader: TableReader, spec: TableSpec): TableReader {
    const where = `${this.inner.name}.${spec.name}`;
    const outgoing = reader.shape.outgoing;
    if (outgoing === undefined) {
      if (hasRules(spec)) throw new AppError('CONFIG_INVALID', `${where}: source ${this.inner.name} does not apply columns, masks, where or query`);
      return reader;
    }
    const masks = new Map<string, ValueMask>();
    for (const c of outgoing) if (c.mask && c.appliedIn === 'pipeline') masks.set(c.name, compileMask(c.mask, this.options.maskingKey));
    const sealed = outgoing.some((c) => c.primaryKey && c.mask !== null);
    if (sealed && this.options.maskingKey === null) throw new AppError('CONFIG_INVALID', `${where}: a masked primary key needs masking.key`);
    if (masks.size === 0 && !sealed) return reader;
    return new MaskedReader(reader, masks, sealed ? new KeySealer(this.options.maskingKey!) : null, where);
  }

  warnings(): Promise<string[]> {
    return this.inner.warnings();
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

class MaskedReader implements TableReader {
  constructor(
    private readonly inner: TableReader,
    private readonly masks: ReadonlyMap<string, ValueMask>,
    private readonly sealer: KeySealer | null,
    private readonly where: string,
  ) {}

  get shape(): TableShape {
    return this.inner.shape;
  }

  private mask(json: string): string {
    return this.masks.size === 0 ? json : maskMembers(json, this.masks);
  }

  private seal(p: Position): Position {
    return this.sealer ? { wm: p.wm, pk: this.sealer.sealKey(p.pk) } : p;
  }

  private open(p: Position): Position;
  private open(p: Position | null): Position | null;
  private open(p: Position | null): Position | null {
    return p && this.sealer ? { wm: p.wm, pk: this.sealer.openKey(p.pk, this.where) } : p;
  }

  private openKeys(keys: readonly string[][]): readonly string[][] {
    return this.sealer ? keys.map((k) => this.sealer!.openKey(k, this.where)) : keys;
  }

  async nextRange(cursor: Cursor, limit: number, upperBound?: string | null): Promise<NextRange | null> {
    return this.sealRange(await this.inner.nextRange({ phase: cursor.phase, after: this.open(cursor.after) }, limit, upperBound));
  }

  async nextRangeOrEmpty(cursor: Cursor, limit: number, upperBound?: string | null): Promise<NextRange | null | 'empty'> {
    if (!this.inner.nextRangeOrEmpty) return (await this.nextRange(cursor, limit, upperBound)) ?? ((await this.inner.isEmpty()) ? 'empty' : null);
    const next = await this.inner.nextRangeOrEmpty({ phase: cursor.phase, after: this.open(cursor.after) }, limit, upperBound);
    return next === 'empty' ? next : this.sealRange(next);
  }

  private sealRange(next: NextRange | null): NextRange | null {
    if (!next || !this.sealer) return next;
    const range: KeyRange = { phase: next.range.phase, lo: next.range.lo && this.seal(next.range.lo), hi: this.seal(next.range.hi) };
    return { range, rows: next.rows, keys: next.keys.map((k) => this.sealer!.sealKey(k)) };
  }

  async nextRangeEnd(cursor: Cursor, limit: number, upperBound?: string | null): Promise<RangeEnd | null> {
    const after = { phase: cursor.phase, after: this.open(cursor.after) };
    if (!this.inner.nextRangeEnd) {
      const next = await this.nextRange(cursor, limit, upperBound);
      return next && { range: next.range, rows: next.rows };
    }
    const end = await this.inner.nextRangeEnd(after, limit, upperBound);
    return end && this.sealEnd(end);
  }

  private sealEnd(end: RangeEnd): RangeEnd {
    if (!this.sealer) return { range: end.range, rows: end.rows };
    return { range: { phase: end.range.phase, lo: end.range.lo && this.seal(end.range.lo), hi: this.seal(end.range.hi) }, rows: end.rows };
  }

  async nextRangeEnds(cursor: Cursor, limit: number, pages: number, upperBound?: string | null): Promise<RangeEnd[]> {
    if (!this.inner.nextRangeEnds) {
      const end = await this.nextRangeEnd(cursor, limit, upperBound);
      return end ? [end] : [];
    }
    const ends = await this.inner.nextRangeEnds({ phase: cursor.phase, after: this.open(cursor.after) }, limit, pages, upperBound);
    return ends.map((end) => this.sealEnd(end));
  }

  readBoundary(safetyLagMs: number): Promise<string | null> {
    return this.inner.readBoundary(safetyLagMs);
  }

  comparePositions(phase: Phase, a: Position, b: Position): Promise<number> {
    return this.inner.comparePositions(phase, this.open(a), this.open(b));
  }

  isEmpty(): Promise<boolean> {
    return this.inner.isEmpty();
  }

  now(): Promise<string | null> {
    return this.inner.now();
  }

  async readRange(range: KeyRange, after: Position | null, limit: number, options?: ReadOptions): Promise<SourceRow[]> {
    const rows = await this.inner.readRange(
      { phase: range.phase, lo: this.open(range.lo), hi: this.open(range.hi) },
      this.open(after),
      limit,
      options,
    );
    return rows.map((r) => ({ ...r, position: this.seal(r.position), json: r.matched === false ? r.json : this.mask(r.json) }));
  }

  countNullWatermark(): Promise<number> {
    return this.inner.countNullWatermark();
  }

  async readKeys(keys: readonly string[][], options?: ReadOptions): Promise<KeyedRow[]> {
    const rows = await this.inner.readKeys(this.openKeys(keys), options);
    return rows.map((r) => ({ ...r, json: r.matched === false ? r.json : this.mask(r.json) }));
  }

  async keyJson(keys: readonly string[][]): Promise<string[]> {
    return (await this.inner.keyJson(this.openKeys(keys))).map((j) => this.mask(j));
  }

  storedKey(pk: readonly string[]): string[] {
    const own = this.inner.storedKey ? this.inner.storedKey(pk) : [...pk];
    return this.sealer ? this.sealer.sealKey(own) : own;
  }

  fullScans(): Promise<string[]> {
    return this.inner.fullScans ? this.inner.fullScans() : Promise.resolve([]);
  }

  pageScanProblem(): Promise<string | null> {
    return this.inner.pageScanProblem ? this.inner.pageScanProblem() : Promise.resolve(null);
  }
}

/**
 * How failures name a row: by its primary-key values as the job holds them, or, when the key is masked (and held
 * sealed), by the key members of the row's outgoing JSON, so that nothing shown carries the raw key.
 */
export function keyDescriber(shape: TableShape): (pk: readonly string[], json?: string) => unknown {
  const masked = shape.outgoing?.some((c) => c.primaryKey && c.mask !== null) ?? false;
  if (!masked) return (pk) => pk;
  const names = new Set(shape.primaryKey.map((n) => JSON.stringify(n)));
  return (_pk, json) => {
    if (json === undefined || json === '') return '[masked key]';
    const key: Record<string, unknown> = {};
    for (const m of objectMembers(json))
      if (names.has(m.rawKey)) key[JSON.parse(m.rawKey) as string] = JSON.parse(json.slice(m.valueStart, m.valueEnd));
    return key;
  };
}
