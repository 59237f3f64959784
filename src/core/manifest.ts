import type { TableShape } from './ports.js';
import { describeMask, type Mask } from './rules.js';

/**
 * The data manifest: for every target, which columns leave and how, which never leave, what filters and transforms
 * apply, and what metadata travels with every record. Built from the source catalog as it is now (the shapes the
 * sources resolved), so a compliance reviewer signs what pushsync will actually do.
 */
export interface ManifestTableInput {
  source: string;
  table: string;
  target: string;
  mode: 'watermark' | 'cdc';
  shape: TableShape;
  query?: string | undefined;
  where?: string | undefined;
  onFilteredOut?: 'delete' | 'skip' | undefined;
  transform?: string | undefined;
  softDelete?: { column?: string | undefined; condition?: string | undefined } | undefined;
}

export interface ManifestColumn {
  name: string;
  type: string;
  /** `as is`, `hashed (…)`, `redacted to "***"`, … */
  rule: string;
  mask: Mask | null;
  /** Where a mask is computed: in the source's SQL, or by pushsync before the record exists. */
  computedIn: 'source SQL' | 'pushsync' | null;
  primaryKey: boolean;
}

export interface ManifestTable {
  source: string;
  table: string;
  target: string;
  mode: 'watermark' | 'cdc';
  /** The custom SQL read in place of a table. */
  query: string | null;
  leaves: ManifestColumn[];
  neverLeaves: Array<{ name: string; type: string; readFor: string[] }>;
  filter: { where: string; onFilteredOut: 'delete' | 'skip' } | null;
  softDelete: string | null;
  transform: string | null;
  notes: string[];
}

export interface Manifest {
  generatedAt: string;
  metadata: Array<{ field: string; meaning: string }>;
  tables: ManifestTable[];
}

const METADATA: Manifest['metadata'] = [
  { field: '_op', meaning: 'the operation: upsert, insert, update, snapshot or delete' },
  {
    field: '_event_id',
    meaning:
      'SHA-256 (32 hex digits) over source, table, operation, _ordering, _generation (from 1 on; generation 0 adds nothing, so ids of records sent before generations existed stay the same) and the record as it leaves (after masks and transform)',
  },
  { field: '_ordering', meaning: "the watermark value, rewritten to sort as text (CDC: the change's log position)" },
  {
    field: '_generation',
    meaning:
      'the table generation: 0, then one more each time the table was dropped and created again (a table_recreated record with no columns starts each); a backfill or reset keeps it',
  },
  { field: '_extracted_at', meaning: 'when pushsync read the row' },
  { field: '_source', meaning: 'the source name from the config' },
  { field: '_table', meaning: 'the table name from the config' },
];

export function buildManifest(inputs: readonly ManifestTableInput[], now: Date = new Date()): Manifest {
  return { generatedAt: now.toISOString(), metadata: METADATA, tables: inputs.map(tableEntry) };
}

function tableEntry(t: ManifestTableInput): ManifestTable {
  const { shape } = t;
  const outgoing =
    shape.outgoing ??
    shape.columns.map((c) => ({ name: c.name, type: c.type, mask: null, appliedIn: null, primaryKey: shape.primaryKey.includes(c.name) }));
  const leaves: ManifestColumn[] = outgoing.map((c) => ({
    name: c.name,
    type: c.type,
    rule: describeMask(c.mask),
    mask: c.mask,
    computedIn: c.appliedIn === 'source' ? 'source SQL' : c.appliedIn === 'pipeline' ? 'pushsync' : null,
    primaryKey: c.primaryKey,
  }));
  const readFor = (name: string): string[] => [
    ...(shape.primaryKey.includes(name) ? ['primary key'] : []),
    ...(shape.watermark === name ? ['watermark'] : []),
    ...(t.softDelete?.column !== undefined && t.softDelete.column.replace(/"/g, '').toLowerCase() === name.toLowerCase() ? ['soft delete'] : []),
  ];
  const notes: string[] = [];
  if (shape.watermark !== null) {
    const withheld = !outgoing.some((c) => c.name === shape.watermark);
    notes.push(`_ordering carries the value of ${shape.watermark}${withheld ? ', although the column itself does not leave' : ''}.`);
  }
  const maskedKey = outgoing.some((c) => c.primaryKey && c.mask !== null);
  if (maskedKey)
    notes.push(
      'The primary key is masked: Redis holds it encrypted (AES-256-GCM, key derived from masking.key); nothing pushsync shows carries it raw.',
    );
  if (!shape.primaryKey.every((k) => outgoing.some((c) => c.name === k)))
    notes.push('Not every primary-key column leaves: delete records cannot name their row in full.');
  if (t.where !== undefined || t.softDelete?.condition !== undefined)
    notes.push('Columns named in SQL conditions are read in the database to evaluate them; only their result is used.');
  if (t.where !== undefined) {
    notes.push(
      (t.onFilteredOut ?? 'delete') === 'delete'
        ? 'A row that matched and stops matching leaves as a delete record carrying its key columns only; rows that never matched leave nothing.'
        : 'A row that stops matching leaves nothing; its last matching version stays at the destination.',
    );
  }
  if (t.transform !== undefined)
    notes.push('The transform receives the records above and may change, add or drop columns and drop rows; review its code with this document.');
  return {
    source: t.source,
    table: t.table,
    target: t.target,
    mode: t.mode,
    query: t.query ?? null,
    leaves,
    neverLeaves: (shape.withheld ?? []).map((c) => ({ name: c.name, type: c.type, readFor: readFor(c.name) })),
    filter: t.where === undefined ? null : { where: t.where, onFilteredOut: t.onFilteredOut ?? 'delete' },
    softDelete:
      t.softDelete?.column !== undefined
        ? `rows where ${t.softDelete.column} is set leave as delete records`
        : t.softDelete?.condition !== undefined
          ? `rows where (${t.softDelete.condition}) leave as delete records`
          : null,
    transform: t.transform ?? null,
    notes,
  };
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function manifestMarkdown(m: Manifest): string {
  const out: string[] = ['# What leaves the network', '', `Generated ${m.generatedAt} from the source catalog and the configuration.`, ''];
  for (const t of m.tables) {
    out.push(`## ${t.source}.${t.table} → ${t.target}`, '', `Mode: ${t.mode}.${t.query ? ` Read from the query \`${cell(t.query)}\`.` : ''}`, '');
    out.push('Columns that leave:', '', '| column | type | leaves | computed in |', '|---|---|---|---|');
    for (const c of t.leaves)
      out.push(`| ${cell(c.name)}${c.primaryKey ? ' (key)' : ''} | ${cell(c.type)} | ${cell(c.rule)} | ${c.computedIn ?? '–'} |`);
    out.push('');
    if (t.neverLeaves.length === 0) out.push('Columns that never leave: none.', '');
    else {
      out.push('Columns that never leave:', '', '| column | type | read for |', '|---|---|---|');
      const conditions = t.filter !== null || (t.softDelete?.startsWith('rows where (') ?? false);
      const unread = conditions ? 'not read, unless a condition below names it' : 'not read';
      for (const c of t.neverLeaves) out.push(`| ${cell(c.name)} | ${cell(c.type)} | ${c.readFor.length > 0 ? c.readFor.join(', ') : unread} |`);
      out.push('');
    }
    out.push(
      `Row filter: ${t.filter ? `only rows where \`${cell(t.filter.where)}\` (onFilteredOut: ${t.filter.onFilteredOut})` : 'none, every row leaves'}.`,
    );
    out.push(`Soft deletes: ${t.softDelete ?? 'none'}.`);
    out.push(`Transform: ${t.transform ?? 'none'}.`, '');
    for (const n of t.notes) out.push(`- ${n}`);
    if (t.notes.length > 0) out.push('');
  }
  out.push('## Metadata in every record', '', '| field | meaning |', '|---|---|');
  for (const f of m.metadata) out.push(`| ${f.field} | ${cell(f.meaning)} |`);
  return `${out.join('\n')}\n`;
}
