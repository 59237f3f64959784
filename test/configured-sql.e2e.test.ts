import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { runPushsync, type Run } from './helpers/cli.js';

const check = (config: string): Promise<Run> => runPushsync(['--config', config, 'check']);

describe('pushsync check with a soft-delete condition that tries to run more statements', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let dir: string;
  const prefix = uniqueName('ps');

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    dir = mkdtempSync(join(tmpdir(), 'pushsync-sql-'));
    await db.client.query(`CREATE TABLE t (id int PRIMARY KEY, updated_at timestamptz NOT NULL, status text)`);
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  const configWith = (name: string, condition: string): string => {
    const path = join(dir, name);
    writeFileSync(
      path,
      JSON.stringify({
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          { name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.t`, watermark: 'updated_at', softDelete: { condition } }] },
        ],
      }),
    );
    return path;
  };

  it.each([
    ['as first written', 'true) FROM t LIMIT 0; DROP TABLE y; SELECT (true'],
    [
      'fitted to the validating statement',
      'true) FROM (SELECT t.*) AS row_), false) FROM SCHEMA.t t LIMIT 0; DROP TABLE SCHEMA.y; SELECT COALESCE((SELECT (true',
    ],
  ])('is a configuration error (%s), and the table it names still exists', async (_label, template) => {
    await db.client.query(`CREATE TABLE IF NOT EXISTS y (a int)`);
    const run = await check(configWith('attack.json', template.replaceAll('SCHEMA', db.schema)));
    const { rows } = await db.client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${db.schema}.y`]);
    expect(rows[0]!.present, 'table y exists').toBe(true);
    expect(run.stderr).toContain(
      "sources[0].tables[0].softDelete.condition: must be one SQL condition: found ')' at position 5 with no '(' before it; it would close pushsync's own parenthesis",
    );
    expect(run.code).toBe(2);
  });

  it('passes with a condition that is one SQL condition', async () => {
    const run = await check(configWith('good.json', "status = 'gone; really' OR (status IS NULL)"));
    expect(run.stdout).toContain(`ok   app.${db.schema}.t`);
    expect(run.code).toBe(0);
  });
});
