import { createRequire } from 'node:module';
import type ZongJi from '@vlasky/zongji';
import type { ColumnSchema, TableMapEvent } from '@vlasky/zongji';
import { decoderCharset, shapeFits, type BinlogColumn } from './mysql-binlog.js';

/**
 * Which columns the binlog reader decodes each captured table's row events with, at each point of the binlog.
 *
 * Row events carry values by column position; names come from elsewhere. The decoder would take them from
 * information_schema when it first meets a table id, i.e. the table as it is now: while a backlog from before an
 * ALTER is read, values would land under the names of today's columns (a column added FIRST shifts every name,
 * the key's too), and a column dropped since makes it fail outright. So the reader keeps the columns itself:
 * - the list in force at the confirmed position is stored with it (`columns:<schema.table>`), so a restart decodes
 *   the backlog with the columns it was written with;
 * - a DDL statement on the table in the binlog re-reads the list at that point (live, that is the shape the
 *   statement made);
 * - every TABLE_MAP event is checked against the list (count and binlog types, `shapeFits`); a list that does not fit
 *   is read again, and if the table now does not fit either (two DDLs in a backlog), its rows of that table id are
 *   not decoded at all: the table is snapshotted again instead. A value never goes under a guessed name.
 */
export class BinlogShapes {
  private readonly current = new Map<string, BinlogColumn[]>();
  /** Lists adopted past the confirmed position: stored once a position at or after theirs is acknowledged. */
  private readonly adopted: Array<{ position: string; relation: string; columns: BinlogColumn[] }> = [];
  private readonly undecodable = new Set<number>();

  constructor(
    private readonly read: (relation: string) => Promise<BinlogColumn[] | null>,
    private readonly events: {
      /** A new column list from `position` on (a `relation` event). */
      shape: (relation: string, columns: BinlogColumn[], position: string) => void;
      /** Row events of the table cannot be decoded: it must be read again. */
      undecodable: (relation: string) => void;
    },
  ) {}

  /**
   * Starts from the stored lists, else the table as it is now (a stream recorded by an older pushsync, or a table
   * newly configured); returns the store fields for those, to be saved at once.
   */
  async init(relations: Iterable<string>, stored: Record<string, string>, position: string): Promise<Record<string, string>> {
    const fresh: Record<string, string> = {};
    for (const relation of relations) {
      const text = stored[`columns:${relation}`];
      const columns = text ? (JSON.parse(text) as BinlogColumn[]) : await this.read(relation);
      if (!columns) continue;
      this.current.set(relation, columns);
      if (!text) {
        fresh[`columns:${relation}`] = JSON.stringify(columns);
        this.events.shape(relation, columns, position);
      }
    }
    return fresh;
  }

  has(relation: string): boolean {
    return this.current.has(relation);
  }

  /** False for a table id whose TABLE_MAP fitted no known column list: its rows are left out. */
  decodable(tableId: number): boolean {
    return !this.undecodable.has(tableId);
  }

  private adopt(relation: string, columns: BinlogColumn[], position: string, announce = true): void {
    this.current.set(relation, columns);
    this.adopted.push({ position, relation, columns });
    if (announce) this.events.shape(relation, columns, position);
  }

  /** After a DDL statement on the table: its columns as they are now; `force` announces them even if unchanged. */
  async refresh(relation: string, position: string, force = false): Promise<void> {
    const now = await this.read(relation);
    if (now === null) return;
    const before = this.current.get(relation);
    if (force || !before || JSON.stringify(before) !== JSON.stringify(now)) this.adopt(relation, now, position);
  }

  /** The column list a captured table's TABLE_MAP is decoded with (see the class comment). */
  async resolve(relation: string, event: TableMapEvent, position: string): Promise<ColumnSchema[]> {
    let columns = this.current.get(relation);
    if (!columns || !shapeFits(event, columns)) {
      const now = await this.read(relation);
      if (now && shapeFits(event, now)) {
        this.adopt(relation, now, position);
        columns = now;
      } else {
        this.undecodable.add(event.tableId);
        // A table that is gone is not read again: if it comes back, its creation is in the binlog.
        if (now) this.events.undecodable(relation);
        return placeholders(event);
      }
    }
    this.undecodable.delete(event.tableId);
    return columns.map((c) => ({
      COLUMN_NAME: c.name,
      COLLATION_NAME: c.collation,
      CHARACTER_SET_NAME: decoderCharset(c.charset),
      COLUMN_COMMENT: '',
      COLUMN_TYPE: c.columnType,
    }));
  }

  /** The store fields for an acknowledged position: the list in force there for each table adopted up to it. */
  storedUpTo(position: string, compare: (a: string, b: string) => number): Record<string, string> {
    const fields: Record<string, string> = {};
    while (this.adopted.length > 0 && compare(this.adopted[0]!.position, position) <= 0) {
      const { relation, columns } = this.adopted.shift()!;
      fields[`columns:${relation}`] = JSON.stringify(columns);
    }
    return fields;
  }
}

/** Type names the decoder reads a value of each binlog type code with (enum and set codes read as bytes). */
const DECODE_AS: Record<number, string> = {
  0: 'decimal',
  246: 'decimal',
  1: 'tinyint',
  2: 'smallint',
  3: 'int',
  4: 'float',
  5: 'double',
  8: 'bigint',
  9: 'mediumint',
};

/**
 * Columns no table has, for a TABLE_MAP whose rows are decoded only to be skipped: names that cannot be a column's,
 * types read from the binlog's own codes, no character set (values stay bytes).
 */
function placeholders(event: TableMapEvent): ColumnSchema[] {
  return event.columnTypes.map((code, i) => ({
    COLUMN_NAME: `\u0000${i + 1}`,
    COLLATION_NAME: null,
    CHARACTER_SET_NAME: null,
    COLUMN_COMMENT: '',
    COLUMN_TYPE: DECODE_AS[code] ?? 'varbinary',
  }));
}

type Resolve = (event: TableMapEvent) => Promise<ColumnSchema[] | null>;

interface ZongJiInternals {
  _fetchTableInfo(event: TableMapEvent, next: () => void): void;
  tableMap: Record<number, { columnSchemas: ColumnSchema[]; parentSchema: string; tableName: string }>;
  emit(event: 'error', err: unknown): boolean;
}

/**
 * The binlog decoder, with the column lists of captured tables supplied by `resolve` (BinlogShapes) instead of its
 * own information_schema query (pinned @vlasky/zongji 0.9.0: `_fetchTableInfo` is where it reads them, with the
 * binlog connection paused until `next`). `resolve` answering null leaves a table to the decoder.
 */
export function shapedZongJi(options: ConstructorParameters<typeof ZongJi>[0], resolve: Resolve): ZongJi {
  // Loaded with the first binlog reader: a process without MySQL change data capture never loads the decoder.
  const Decoder = (createRequire(import.meta.url)('@vlasky/zongji') as { default: typeof ZongJi }).default;
  const zongji = new Decoder(options);
  const self = zongji as unknown as ZongJiInternals;
  const fetch = self._fetchTableInfo.bind(zongji);
  self._fetchTableInfo = (event, next) => {
    resolve(event).then(
      (columnSchemas) => {
        if (columnSchemas === null) return fetch(event, next);
        self.tableMap[event.tableId] = { columnSchemas, parentSchema: event.schemaName, tableName: event.tableName };
        next();
      },
      (err: unknown) => self.emit('error', err),
    );
  };
  return zongji;
}

/** Forgets the decoder's cached column lists of a table, so its next TABLE_MAP asks for them again. */
export function forgetTable(zongji: ZongJi, schema: string, table: string): void {
  const map = (zongji as unknown as ZongJiInternals).tableMap;
  for (const [id, t] of Object.entries(map)) if (t.parentSchema === schema && t.tableName === table) delete map[Number(id)];
}
