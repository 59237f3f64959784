import { parseConfigText, tableSpec } from './config.js';
import { AppError } from './core/errors.js';
import { slug } from './core/identifiers.js';
import { initYaml, planTable, type Engine, type InitDocument, type TableFacts, type TablePlan } from './core/init-plan.js';
import { createSources } from './main.js';
import { MysqlSource } from './sources/mysql.js';
import { introspectMysql } from './sources/mysql-introspect.js';
import { PostgresSource } from './sources/postgres.js';
import { introspectPostgres } from './sources/postgres-introspect.js';

/**
 * `pushsync init`: reads a database's catalog and writes a first, minimal config for it. The written text is then
 * loaded as pushsync loads any config and every table in it is described by the same reader a sync uses, so a
 * table the sync would refuse is left out (commented, with the reason) instead of failing the first run.
 */

export const DEV_SINK_URL = 'http://127.0.0.1:8787/v2/stream';

export interface InitOptions {
  url: string;
  /** Only these tables (`table` or `schema.table`); default every table the role may read. */
  tables?: string[] | undefined;
  /** The destination URL to write. @defaultValue the dev sink's */
  destinationUrl?: string | undefined;
  /** The source's name. @defaultValue the database's name */
  sourceName?: string | undefined;
  /** The time written into the header. */
  now?: Date;
}

export interface InitResult {
  text: string;
  plans: TablePlan[];
  /** The variable the written URL reads the password from, when the given URL had one. */
  passwordVariable: string | null;
}

interface ParsedUrl {
  engine: Engine;
  database: string;
  /** The URL with its password (in the user info or a `password` parameter) replaced by `${variable}`. */
  written: string;
  hadPassword: boolean;
}

function parseUrl(url: string, variable: (database: string) => string): ParsedUrl {
  const engine = /^(postgres|postgresql):/i.test(url) ? 'postgres' : /^(mysql|mariadb):/i.test(url) ? 'mysql' : undefined;
  if (!engine || !URL.canParse(url))
    throw new AppError(
      'CONFIG_INVALID',
      '--url must be a postgres://, postgresql://, mysql:// or mariadb:// URL, e.g. postgres://user:password@host:5432/database',
    );
  const u = new URL(url);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  const name = variable(database);
  let hadPassword = u.password !== '';
  const params = u.search
    .replace(/^\?/, '')
    .split('&')
    .filter(Boolean)
    .map((p) => {
      if (!/^password=/i.test(p)) return p;
      hadPassword = true;
      return `${p.slice(0, p.indexOf('='))}=\${${name}}`;
    });
  const user = u.username ? `${u.username}${u.password ? `:\${${name}}` : ''}@` : u.password ? `:\${${name}}@` : '';
  const written = `${u.protocol}//${user}${u.host}${u.pathname}${params.length ? `?${params.join('&')}` : ''}`;
  return { engine, database, written, hadPassword };
}

function sourceNameOf(database: string, given: string | undefined): string {
  const name = given ?? (slug(database.split('/').pop() ?? '') || 'db');
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new AppError('CONFIG_INVALID', `--name ${name}: use letters, digits, _ and -`);
  return name;
}

function chosen(facts: TableFacts[], names: string[] | undefined): TableFacts[] {
  if (!names || names.length === 0) return facts;
  return names.map((n) => {
    const matches = (f: TableFacts): boolean => n === f.name || n === `${f.schema}.${f.name}`;
    const found =
      facts.find(matches) ?? facts.find((f) => n.toLowerCase() === f.name.toLowerCase() || n.toLowerCase() === `${f.schema}.${f.name}`.toLowerCase());
    if (found) return found;
    const known = facts.map((f) => (f.inDefaultSchema ? f.name : `${f.schema}.${f.name}`));
    throw new AppError(
      'CONFIG_INVALID',
      `--tables: no table ${n} that this user may read; tables: ${known.slice(0, 30).join(', ')}${known.length > 30 ? ', …' : ''}`,
    );
  });
}

export async function initConfig(options: InitOptions): Promise<InitResult> {
  let sourceName = '';
  const variableOf = (database: string): string => {
    sourceName = sourceNameOf(database, options.sourceName);
    return `${sourceName.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_DB_PASSWORD`;
  };
  const url = parseUrl(options.url, variableOf);
  const passwordVariable = url.hadPassword ? variableOf(url.database) : null;
  const sourceOptions = { name: sourceName, url: options.url, poolSize: 1, statementTimeoutMs: 60_000 };
  const facts =
    url.engine === 'postgres'
      ? await withSource(new PostgresSource(sourceOptions), introspectPostgres)
      : await withSource(new MysqlSource(sourceOptions), introspectMysql);
  const tables = chosen(facts, options.tables);
  if (tables.length === 0) throw new AppError('CONFIG_INVALID', `the database has no table this user may read (${url.written})`);
  const doc: InitDocument = {
    engine: url.engine,
    source: sourceName,
    url: url.written,
    passwordVariable,
    destinationUrl: options.destinationUrl ?? DEV_SINK_URL,
    plans: tables.map((t) => planTable(url.engine, t)),
    writtenAt: (options.now ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  await verify(doc, options.url);
  if (doc.plans.every((p) => p.leftOut))
    throw new AppError(
      'SOURCE_SCHEMA',
      `no table can be synced by watermark as it is:\n${doc.plans.map((p) => `  ${p.configName}: ${p.leftOut}`).join('\n')}`,
    );
  return { text: initYaml(doc), plans: doc.plans, passwordVariable };
}

async function withSource<S extends { close(): Promise<void> }, T>(source: S, fn: (s: S) => Promise<T>): Promise<T> {
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}

/**
 * Loads the text as a config and describes every synced table with the sync's own reader; a table it refuses is
 * left out with the reader's reason. The real URL is given only to this check, never written.
 */
async function verify(doc: InitDocument, realUrl: string): Promise<void> {
  // No variable is set: the written `${…}` references stay unresolved, and the real URL is used below.
  const env = {};
  const config = parseConfigText(initYaml(doc), env, { needs: [] }, 'the written config');
  const sources = createSources({ ...config, sources: config.sources.map((s) => ({ ...s, url: realUrl, poolSize: 1 })) });
  try {
    const source = sources.get(doc.source)!;
    for (const t of config.sources[0]!.tables) {
      const plan = doc.plans.find((p) => p.configName === t.name && !p.leftOut)!;
      try {
        await source.table(tableSpec(t));
      } catch (err) {
        plan.leftOut = `pushsync cannot read it as written: ${err instanceof AppError ? err.message : String(err)}`;
      }
    }
  } finally {
    await Promise.all([...sources.values()].map((s) => s.close()));
  }
  if (doc.plans.some((p) => !p.leftOut)) parseConfigText(initYaml(doc), env, { needs: [] }, 'the written config');
}

/** What `pushsync init` prints after writing: a line per table and what to do next. */
export function initSummary(result: InitResult, path: string): string {
  const lines = [`wrote ${path}`];
  for (const p of result.plans) {
    if (p.leftOut) lines.push(`skip ${p.configName}: ${p.leftOut}`);
    else {
      const wm = p.watermark!;
      const kept = wm.setByTrigger
        ? `kept current by trigger ${wm.setByTrigger}`
        : wm.onUpdate
          ? 'kept current by ON UPDATE'
          : 'NOT kept current on UPDATE';
      const index = p.comments.some((c) => c.sql.some((s) => s.startsWith('CREATE INDEX'))) ? '; index to create in the file' : '';
      lines.push(`${p.warnings.length ? 'warn' : 'ok  '} ${p.configName}: key (${p.primaryKey!.join(', ')}), watermark ${wm.name} ${kept}${index}`);
    }
  }
  lines.push(
    '',
    'next:',
    ...(result.passwordVariable ? [`  export ${result.passwordVariable}=…          # the database password; the file reads it from there`] : []),
    '  export DEFINITE_API_KEY=$(openssl rand -hex 16)   # for the dev sink; your Definite key for Definite',
    '  pushsync dev-sink &                              # the local destination the file points at',
    `  pushsync -c ${path} check && pushsync -c ${path} sync --once`,
    '',
  );
  return lines.join('\n');
}
