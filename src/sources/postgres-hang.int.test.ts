import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { LOGICAL_PG_URL, PG_URL, uniqueName } from '../../test/helpers/services.js';
import { TcpProxy } from '../../test/helpers/tcp-proxy.js';
import type { ChangeStream } from '../core/ports.js';
import { PostgresCdc } from './postgres-cdc.js';
import { PostgresSource } from './postgres.js';

/**
 * Regression: a reader awaiting Postgres on a connection that stops answering without a FIN or RST (a partition, a
 * host that died) waited forever, its lease renewed, so no other process took over. A proxy that stops carrying
 * bytes, and closes nothing, plays that network.
 */

/** `url` with its port replaced by the proxy's. */
function through(proxy: TcpProxy, url: string): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}

const portOf = (url: string): number => Number(new URL(url).port || 5432);

describe('a Postgres query on a connection that stops answering', () => {
  let proxy: TcpProxy;
  let source: PostgresSource | undefined;

  afterEach(async () => {
    await proxy?.close();
    // The pool's connections died with the proxy; ending it must not wait on them.
    await Promise.race([source?.close(), sleep(2000)]);
    source = undefined;
  });

  it('fails retryable once its statement timeout and the grace have passed, instead of waiting forever', async () => {
    proxy = await TcpProxy.start(portOf(PG_URL));
    source = new PostgresSource({ name: 's', url: through(proxy, PG_URL), poolSize: 5, statementTimeoutMs: 600, answerGraceMs: 400 });
    const s = source;
    // A pooled connection for each query below (a new one could not even be opened through the proxy).
    const probe = { text: 'SELECT pg_sleep(0.1)::text', values: [] };
    expect(await Promise.all([1, 2, 3, 4, 5].map(() => s.query(probe, 'probe')))).toEqual([1, 2, 3, 4, 5].map(() => [['']]));
    proxy.hang();
    const page = { text: 'SELECT 2', values: [] };
    const reads: Array<[string, () => Promise<unknown>]> = [
      ['a query', () => s.query(page, 'read a page')],
      ['configured SQL', () => s.query(page, 'read a page', true)],
      ['a streamed read', () => s.queryEach(page, 'read rows', false, () => undefined)],
      ['a streamed read of configured SQL', () => s.queryEach(page, 'read rows', true, () => undefined)],
      ['a COPY read', () => s.copyEach('COPY (SELECT 2) TO STDOUT', 'read rows', () => undefined)],
    ];
    for (const [what, read] of reads) {
      const started = Date.now();
      await expect(read(), what).rejects.toMatchObject({ code: 'SOURCE_UNAVAILABLE', retryable: true });
      // One bound, not one per statement of the transaction around configured SQL.
      expect(Date.now() - started, what).toBeLessThan(1000 + 900);
    }
  }, 20_000);

  it('does not cut a statement that runs longer than the grace but within its statement timeout', async () => {
    proxy = await TcpProxy.start(portOf(PG_URL));
    source = new PostgresSource({ name: 's', url: through(proxy, PG_URL), poolSize: 1, statementTimeoutMs: 3000, answerGraceMs: 200 });
    expect(await source.query({ text: 'SELECT pg_sleep(1.5)::text', values: [] }, 'a long page')).toEqual([['']]);
  }, 20_000);
});

describe('a replication stream on a connection that stops answering', () => {
  const schema = uniqueName('hang');
  const slot = uniqueName('slot');
  let admin: pg.Client;
  let direct: PostgresCdc;
  let proxy: TcpProxy;
  const streams: ChangeStream[] = [];
  const relations = (): Map<string, { primaryKey: string[] }> => new Map([[`${schema}.t`, { primaryKey: ['id'] }]]);

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.query(`CREATE TABLE ${schema}.t (id int PRIMARY KEY)`);
    direct = new PostgresCdc('app', LOGICAL_PG_URL, slot, slot);
    await direct.prepare([{ schema, relname: 't' }]);
    await direct.create();
  });

  afterEach(async () => {
    for (const s of streams.splice(0)) await s.stop().catch(() => {});
    await proxy?.close();
  });

  afterAll(async () => {
    for (let i = 0; i < 50; i++) {
      const { rows } = await admin.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      if (rows.length === 0 || rows[0].active === false) break;
      await sleep(100);
    }
    await admin.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await admin.query(`DROP PUBLICATION IF EXISTS ${slot}`);
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
    await direct.close();
  });

  async function open(receiveTimeoutMs: number): Promise<{ errors: Error[]; events: number[]; stream: ChangeStream }> {
    proxy = await TcpProxy.start(portOf(LOGICAL_PG_URL));
    const cdc = new PostgresCdc('app', through(proxy, LOGICAL_PG_URL), slot, slot, { receiveTimeoutMs });
    const errors: Error[] = [];
    const events: number[] = [];
    const stream = await cdc.open(
      relations(),
      () => events.push(Date.now()),
      (err) => errors.push(err),
    );
    streams.push(stream);
    return { errors, events, stream };
  }

  it('ends with a retryable error when nothing arrives for cdc.receiveTimeout', async () => {
    const { errors, stream } = await open(1000);
    proxy.hang();
    const started = Date.now();
    await Promise.race([stream.done, sleep(10_000)]);
    expect(errors[0]).toMatchObject({ code: 'SOURCE_UNAVAILABLE', retryable: true });
    expect(errors[0]!.message).toMatch(/nothing received from the server/);
    expect(Date.now() - started).toBeLessThan(3000);
  }, 20_000);

  it('keeps an idle stream that answers: the keepalive asked for at half the time arrives', async () => {
    const { errors, events } = await open(1000);
    await sleep(3500);
    expect(errors).toEqual([]);
    // The server's keepalives, answering the requests, reached the reader as idle positions.
    expect(events.length).toBeGreaterThanOrEqual(2);
  }, 20_000);
});
