/**
 * `pushsync init`: from what a source's catalog says about its tables, the choices a first config needs (primary
 * key, watermark, which tables cannot be synced by watermark and why) and the commented YAML that records them.
 * Pure: the catalog queries live in the sources.
 */

export type Engine = 'postgres' | 'mysql';

/** A column that could serve as a time watermark. */
export interface TimestampColumn {
  name: string;
  /** The declared type, as the catalog prints it (`timestamp with time zone`, `datetime(6)`). */
  type: string;
  /** The column default as the catalog prints it (`now()`, `CURRENT_TIMESTAMP(6)`), or null. */
  default: string | null;
  /** MySQL/MariaDB: `ON UPDATE CURRENT_TIMESTAMP` keeps it current. */
  onUpdate: boolean;
  /** The trigger that sets it before every UPDATE of a row, or null. */
  setByTrigger: string | null;
}

export interface IndexFacts {
  name: string;
  /** Plain columns in index order (an index with an expression or a predicate is not listed). */
  columns: string[];
  unique: boolean;
}

/** What a source's catalog says about one table. */
export interface TableFacts {
  schema: string;
  name: string;
  /** Whether `name` alone finds the table (it is in the URL's database or the first schema of the search path). */
  inDefaultSchema: boolean;
  /** The planner's row estimate, or null when the table was never analysed. */
  rowEstimate: number | null;
  /** The primary key's columns in key order, or null. */
  primaryKey: string[] | null;
  /** Columns declared NOT NULL. */
  notNull: string[];
  timestamps: TimestampColumn[];
  indexes: IndexFacts[];
}

export interface TablePlan {
  facts: TableFacts;
  /** The name as the config writes it. */
  configName: string;
  primaryKey: string[] | null;
  /** Set when primaryKey comes from a unique index instead of a primary key. */
  keyFrom: string | null;
  watermark: TimestampColumn | null;
  /** Comments above the entry, in order: what was found, each with the SQL that would fix it (an index, a trigger). */
  comments: Array<{ text: string; sql: string[] }>;
  /** The comments that are warnings: the watermark may miss changes. */
  warnings: string[];
  /** Why the table is written commented out, or null when it is synced. */
  leftOut: string | null;
}

/** Names that usually mean "changed at"; a creation time does not change on UPDATE. */
const CHANGED_NAME = /(updat|modif|chang|touch|last_?edit|mtime|last_update)/i;
const CREATED_NAME = /(creat|insert|added|born|ctime)/i;

/** How a name is written in the config: bare when the source reads it back unchanged, else double-quoted. */
export function configIdent(engine: Engine, name: string): string {
  const bare = engine === 'postgres' ? /^[a-z_][a-z0-9_$]*$/ : /^[A-Za-z_][A-Za-z0-9_$]*$/;
  return bare.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** The name in the source's own SQL, for the statements suggested in comments. */
export function sqlIdent(engine: Engine, name: string): string {
  return engine === 'postgres' ? `"${name.replace(/"/g, '""')}"` : `\`${name.replace(/`/g, '``')}\``;
}

function sqlName(engine: Engine, name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : sqlIdent(engine, name);
}

function qualifiedSql(engine: Engine, t: TableFacts): string {
  return `${sqlName(engine, t.schema)}.${sqlName(engine, t.name)}`;
}

/** An index whose columns start with (watermark, primary key...) serves the keyset pages without a sort. */
function pagingIndex(t: TableFacts, watermark: string, key: string[]): { exact: IndexFacts | undefined; leading: IndexFacts | undefined } {
  const wanted = [watermark, ...key];
  return {
    exact: t.indexes.find((i) => wanted.every((c, n) => i.columns[n] === c)),
    leading: t.indexes.find((i) => i.columns[0] === watermark),
  };
}

function keptCurrent(c: TimestampColumn): boolean {
  return c.setByTrigger !== null || c.onUpdate;
}

/** The best watermark among columns outside the key: kept current, then named like a change time, then indexed. */
function chooseWatermark(t: TableFacts, key: string[]): TimestampColumn | null {
  const score = (c: TimestampColumn): number =>
    (keptCurrent(c) ? 8 : 0) +
    (CHANGED_NAME.test(c.name) ? 4 : 0) +
    (pagingIndex(t, c.name, key).leading ? 2 : 0) -
    (CREATED_NAME.test(c.name) ? 4 : 0);
  const candidates = t.timestamps.filter((c) => !key.includes(c.name));
  let best: TimestampColumn | null = null;
  for (const c of candidates) if (best === null || score(c) > score(best)) best = c;
  return best;
}

/** A unique index of NOT NULL columns identifies rows as well as a primary key. */
function uniqueKey(t: TableFacts): IndexFacts | undefined {
  return t.indexes.find((i) => i.unique && i.columns.length > 0 && i.columns.every((c) => t.notNull.includes(c)));
}

function triggerSql(engine: Engine, t: TableFacts, c: TimestampColumn): string[] {
  const col = sqlName(engine, c.name);
  const table = qualifiedSql(engine, t);
  if (engine === 'mysql') {
    const fsp = /\((\d)\)/.exec(c.type)?.[1];
    const now = fsp ? `CURRENT_TIMESTAMP(${fsp})` : 'CURRENT_TIMESTAMP';
    return [`ALTER TABLE ${table} MODIFY ${col} ${c.type.toUpperCase()} NOT NULL DEFAULT ${now} ON UPDATE ${now};`];
  }
  const fn = `${sqlName(engine, t.schema)}.${sqlName(engine, `pushsync_set_${c.name}`)}`;
  return [
    `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.${col} := now(); RETURN NEW; END $$;`,
    `CREATE TRIGGER ${sqlName(engine, `${t.name}_${c.name}_current`)} BEFORE UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${fn}();`,
  ];
}

function indexSql(engine: Engine, t: TableFacts, watermark: string, key: string[]): string {
  const cols = [watermark, ...key].map((c) => sqlName(engine, c)).join(', ');
  const name = sqlName(engine, `${t.name}_${watermark}_pushsync_idx`.slice(0, 63));
  return engine === 'postgres'
    ? `CREATE INDEX CONCURRENTLY ${name} ON ${qualifiedSql(engine, t)} (${cols});`
    : `CREATE INDEX ${name} ON ${qualifiedSql(engine, t)} (${cols});`;
}

function rows(t: TableFacts): string {
  return t.rowEstimate === null ? 'row count unknown (never analysed)' : `about ${t.rowEstimate} row${t.rowEstimate === 1 ? '' : 's'}`;
}

export function planTable(engine: Engine, t: TableFacts): TablePlan {
  const configName = t.inDefaultSchema ? configIdent(engine, t.name) : `${configIdent(engine, t.schema)}.${configIdent(engine, t.name)}`;
  const plan: TablePlan = { facts: t, configName, primaryKey: null, keyFrom: null, watermark: null, comments: [], warnings: [], leftOut: null };
  const note = (text: string, sql: string[] = []): void => void plan.comments.push({ text, sql });
  const unique = t.primaryKey ? undefined : uniqueKey(t);
  const key = t.primaryKey ?? unique?.columns ?? null;
  if (!key) {
    plan.leftOut =
      'no primary key, and no unique index of NOT NULL columns: pushsync pages and identifies rows by key. Add a primary ' +
      'key, or set primaryKey: [...] to columns that are unique and not null, then uncomment the entry';
    note(rows(t));
    return plan;
  }
  plan.primaryKey = key;
  plan.keyFrom = unique ? `unique index ${unique.name} (the table has no primary key)` : null;
  note(`${rows(t)}; primary key (${key.join(', ')})${unique ? `: from unique index ${unique.name}, the table has no primary key` : ''}`);
  const wm = chooseWatermark(t, key);
  if (!wm) {
    const inKey = t.timestamps.filter((c) => key.includes(c.name)).map((c) => c.name);
    const rest = key.filter((c) => !inKey.includes(c));
    plan.leftOut =
      (inKey.length > 0
        ? `its only timestamp column (${inKey.join(', ')}) is part of the primary key, and a watermark cannot be` +
          (rest.length > 0 ? ` (if (${rest.join(', ')}) alone identifies a row: primaryKey: [${rest.join(', ')}], watermark: ${inKey[0]})` : '') +
          '. '
        : 'no timestamp column to use as watermark. ') +
      'Add a column that every change sets (an updated_at kept current by a trigger), or capture its changes with mode: cdc (README)';
    return plan;
  }
  plan.watermark = wm;
  const others = t.timestamps.filter((c) => c !== wm && !key.includes(c.name)).map((c) => c.name);
  note(`watermark ${wm.name} (${wm.type})${others.length ? `; other timestamp columns: ${others.join(', ')}` : ''}`);
  if (wm.setByTrigger) note(`${wm.name} is kept current on UPDATE by trigger ${wm.setByTrigger}`);
  else if (wm.onUpdate) note(`${wm.name} is kept current on UPDATE by ON UPDATE CURRENT_TIMESTAMP`);
  else {
    const why = wm.default
      ? `its DEFAULT ${wm.default} sets it on INSERT only, so an UPDATE that does not set ${wm.name} is never sent`
      : `nothing in the database sets it, so a row is sent only when the application sets ${wm.name} on every INSERT and UPDATE`;
    const text =
      `WARNING: no trigger${engine === 'mysql' ? ' or ON UPDATE' : ''} keeps ${wm.name} current: ${why}. ` +
      (engine === 'mysql' ? 'Make the database set it:' : 'A trigger that sets it:');
    plan.warnings.push(text);
    note(text, triggerSql(engine, t, wm));
  }
  if (CREATED_NAME.test(wm.name) && !keptCurrent(wm)) {
    const text = `WARNING: ${wm.name} reads like a creation time, which an UPDATE does not change; prefer a column that every change sets`;
    plan.warnings.push(text);
    note(text);
  }
  const index = pagingIndex(t, wm.name, key);
  const order = [wm.name, ...key].join(', ');
  if (index.exact) note(`index ${index.exact.name} serves its pages, read in (${order}) order`);
  else if (index.leading)
    note(`index ${index.leading.name} starts with ${wm.name} but does not continue with (${key.join(', ')}); for pages without a sort:`, [
      indexSql(engine, t, wm.name, key),
    ]);
  else note(`no index on (${order}), the order pages are read in: each page scans the table. Create one:`, [indexSql(engine, t, wm.name, key)]);
  return plan;
}

/** Wraps comment text to lines of at most `width` characters after the `# ` prefix. */
function wrap(text: string, width = 110): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

/** A YAML scalar: bare when YAML reads it back as the same string, else double-quoted. */
export function yamlScalar(value: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(value) && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(value)) return value;
  return JSON.stringify(value);
}

export interface InitDocument {
  engine: Engine;
  /** The source's name in the config. */
  source: string;
  /** The URL as written into the file: no password in it (a `${VAR}` instead). */
  url: string;
  /** The variable holding the password, when the URL given had one. */
  passwordVariable: string | null;
  destinationUrl: string;
  plans: TablePlan[];
  writtenAt: string;
}

function comment(indent: string, text: string): string[] {
  return wrap(text).map((l) => `${indent}# ${l}`);
}

function tableLines(engine: Engine, p: TablePlan): string[] {
  const indent = '      ';
  const out: string[] = [];
  for (const c of p.comments) {
    out.push(...comment(indent, c.text));
    for (const s of c.sql) out.push(`${indent}#   ${s}`);
  }
  const entry = [`- name: ${yamlScalar(p.configName)}`];
  if (p.keyFrom && p.primaryKey) entry.push(`  primaryKey: [${p.primaryKey.map((c) => yamlScalar(configIdent(engine, c))).join(', ')}]`);
  if (p.watermark) entry.push(`  watermark: ${yamlScalar(configIdent(engine, p.watermark.name))}`);
  if (p.leftOut) {
    out.push(...comment(indent, `LEFT OUT: ${p.leftOut}.`));
    if (!p.watermark) entry.push('  watermark: <column>');
    out.push(...entry.map((l) => `${indent}# ${l}`));
  } else out.push(...entry.map((l) => `${indent}${l}`));
  return ['', ...out];
}

/** The commented pushsync.yaml. */
export function initYaml(doc: InitDocument): string {
  const synced = doc.plans.filter((p) => !p.leftOut);
  const warned = synced.filter((p) => p.warnings.length > 0);
  const lines = [
    `# pushsync.yaml, written by \`pushsync init\` from ${doc.url} at ${doc.writtenAt}.`,
    '# Only what this database needs is written; every other key has its default (README: Configuration reference).',
    '#',
    '# Set before running pushsync:',
    '#   DEFINITE_API_KEY: the destination API key (for the dev sink: any text, the same `pushsync dev-sink` is given)',
    ...(doc.passwordVariable ? [`#   ${doc.passwordVariable}: the database password (percent-encoded if it holds @ : / ? # %)`] : []),
    '#',
    '# Then: pushsync dev-sink (in another terminal), pushsync check, pushsync sync --once.',
    `# Tables: ${synced.length} synced, ${doc.plans.length - synced.length} left out (commented, with the reason), ` +
      `${warned.length} with a WARNING to read before trusting the sync.`,
    '',
    'redis:',
    '  url: ${REDIS_URL:-redis://127.0.0.1:6379}',
    '',
    'destination:',
    `  # ${doc.destinationUrl.startsWith('http://127.0.0.1:8787') ? 'The local dev sink (`pushsync dev-sink`). Definite: https://api.definite.app/v2/stream' : 'Definite: https://api.definite.app/v2/stream; the local dev sink: http://127.0.0.1:8787/v2/stream'}`,
    `  url: ${yamlScalar(doc.destinationUrl)}`,
    '  apiKey: ${DEFINITE_API_KEY}',
    '',
    'sources:',
    `  - name: ${doc.source}`,
    `    kind: ${doc.engine}`,
    `    url: ${yamlScalar(doc.url)}`,
    '    tables:',
  ];
  for (const p of doc.plans) lines.push(...tableLines(doc.engine, p));
  // tableLines starts every entry with a blank line; none right below `tables:`.
  lines.splice(lines.indexOf('    tables:') + 1, 1);
  return `${lines.join('\n')}\n`;
}
