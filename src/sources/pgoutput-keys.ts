import type { Tuple } from '../core/changes.js';

/**
 * Decoding of pgoutput's insert, update and delete messages (protocol version 1) down to what change capture keeps:
 * the relation and the values of its primary-key columns. Every other column is stepped over without being decoded:
 * a change travels as its key alone (core/changes.ts), and turning each column of every row into a string and an
 * object property was most of the cost of reading a large transaction.
 *
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */

/** A relation as its changes are decoded: the columns in the server's order, and which of them to keep. */
export interface RelationLayout {
  /** `schema.relname`. */
  relation: string;
  /** The relation's oid, as text. */
  id: string;
  columns: ReadonlyArray<{
    name: string;
    /** Part of the replica identity (flag 1 of the relation message). */
    identity: boolean;
    /**
     * A `character(n)` column (type oid 1042): the stream prints its values blank-padded to n, as stored, while the
     * key texts the table reader produces (`::text`) drop trailing blanks. Kept values are trimmed alike, so a key
     * is spelled one way whichever path read it (filter ledgers and change jobs compare keys by their text).
     */
    padded?: boolean | undefined;
  }>;
  /** Per column: its value is decoded into tuples; null when the relation is not watched (nothing is decoded). */
  keep: readonly boolean[] | null;
}

export type ChangeMessage =
  | { tag: 'insert'; relation: string; row: Tuple; id: string }
  | { tag: 'update'; relation: string; row: Tuple; oldKey: Tuple | null; id: string }
  | { tag: 'delete'; relation: string; oldKey: Tuple | null; id: string };

export function relationLayout(
  relation: string,
  id: string,
  columns: ReadonlyArray<{ name: string; identity: boolean; padded?: boolean | undefined }>,
  primaryKey: readonly string[] | undefined,
): RelationLayout {
  const keep = primaryKey === undefined ? null : columns.map((c) => primaryKey.includes(c.name));
  return { relation, id, columns, keep };
}

const INSERT = 0x49; // 'I'
const UPDATE = 0x55; // 'U'
const DELETE = 0x44; // 'D'
const NEW = 0x4e; // 'N'
const KEY = 0x4b; // 'K'
const OLD = 0x4f; // 'O'

/** The relation oid of an insert, update or delete message; null for every other message. */
export function changedRelation(buf: Buffer): number | null {
  const tag = buf[0];
  if ((tag !== INSERT && tag !== UPDATE && tag !== DELETE) || buf.length < 5) return null;
  return buf.readUInt32BE(1);
}

class Reader {
  p = 5;
  constructor(readonly buf: Buffer) {}

  byte(): number {
    if (this.p >= this.buf.length) throw new Error('pgoutput: unexpected end of message');
    return this.buf[this.p++]!;
  }

  /**
   * Reads a TupleData, keeping the columns `keep` marks. `identityOnly`: a key tuple ('K'), whose other columns are
   * placeholders (null), so only replica-identity columns are taken and a null there means "not sent". `old`: the
   * old row of the same change, which stands in for a value left unchanged in TOAST ('u').
   */
  tuple(layout: RelationLayout, identityOnly: boolean, old: Tuple | null): Tuple {
    const buf = this.buf;
    if (this.p + 2 > buf.length) throw new Error('pgoutput: unexpected end of message');
    const n = buf.readUInt16BE(this.p);
    this.p += 2;
    // Column names are data: a null prototype keeps a column called `__proto__` a column.
    const tuple: Tuple = Object.create(null) as Tuple;
    const keep = layout.keep;
    for (let i = 0; i < n; i++) {
      const kind = this.byte();
      const column = layout.columns[i];
      if (column === undefined) throw new Error('pgoutput: more columns than the relation message announced');
      const wanted = keep !== null && keep[i] === true && (!identityOnly || column.identity);
      if (kind === 0x74 /* t */ || kind === 0x62 /* b */) {
        if (this.p + 4 > buf.length) throw new Error('pgoutput: unexpected end of message');
        const size = buf.readUInt32BE(this.p);
        this.p += 4;
        const end = this.p + size;
        if (end > buf.length) throw new Error('pgoutput: unexpected end of message');
        // Binary values are only sent when asked for (the `binary` option), which this reader never does.
        if (wanted) {
          const text = buf.toString('utf8', this.p, end);
          tuple[column.name] = column.padded === true ? text.replace(/ +$/, '') : text;
        }
        this.p = end;
      } else if (kind === 0x6e /* n */) {
        if (wanted) tuple[column.name] = identityOnly ? undefined : null;
      } else if (kind === 0x75 /* u */) {
        if (wanted) tuple[column.name] = old?.[column.name];
      } else {
        throw new Error(`pgoutput: unknown column kind ${String.fromCharCode(kind)}`);
      }
    }
    return tuple;
  }
}

/** Decodes an insert, update or delete message of a relation whose layout is known. */
export function decodeChange(buf: Buffer, layout: RelationLayout): ChangeMessage {
  const r = new Reader(buf);
  const { relation, id } = layout;
  switch (buf[0]) {
    case INSERT:
      if (r.byte() !== NEW) throw new Error('pgoutput: insert without a new tuple');
      return { tag: 'insert', relation, row: r.tuple(layout, false, null), id };
    case UPDATE: {
      let kind = r.byte();
      let oldKey: Tuple | null = null;
      let old: Tuple | null = null;
      if (kind === KEY) oldKey = r.tuple(layout, true, null);
      else if (kind === OLD) oldKey = old = r.tuple(layout, false, null);
      if (kind === KEY || kind === OLD) kind = r.byte();
      if (kind !== NEW) throw new Error(`pgoutput: unknown update part ${String.fromCharCode(kind)}`);
      return { tag: 'update', relation, row: r.tuple(layout, false, old), oldKey, id };
    }
    case DELETE: {
      const kind = r.byte();
      if (kind !== KEY && kind !== OLD) throw new Error(`pgoutput: unknown delete part ${String.fromCharCode(kind)}`);
      return { tag: 'delete', relation, oldKey: r.tuple(layout, kind === KEY, null), id };
    }
    default:
      throw new Error('pgoutput: not a change message');
  }
}
