import { afterEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { MYSQL_URL } from '../../test/helpers/mysql.js';
import { TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { MysqlSource } from './mysql.js';

/**
 * Regression: a statement awaited on a connection that stops answering without a FIN or RST (a partition, a host
 * that died) waited forever. A proxy that stops carrying bytes, and closes nothing, plays that network.
 */
describe('a MySQL statement on a connection that stops answering', () => {
  let proxy: TcpProxy;
  let source: MysqlSource | undefined;

  afterEach(async () => {
    await proxy?.close();
    await Promise.race([source?.close(), sleep(2000)]);
    source = undefined;
  });

  const through = (p: TcpProxy): string => {
    const u = new URL(MYSQL_URL);
    u.hostname = '127.0.0.1';
    u.port = String(p.port);
    return u.toString();
  };

  it('fails retryable once its statement timeout and the grace have passed, instead of waiting forever', async () => {
    proxy = await TcpProxy.start(Number(new URL(MYSQL_URL).port || 3306));
    source = new MysqlSource({ name: 'm', url: through(proxy), poolSize: 2, statementTimeoutMs: 600, answerGraceMs: 400 });
    const s = source;
    // A pooled connection, its session set up, for each statement below.
    await Promise.all([s.query('SELECT SLEEP(0.1)', 'probe'), s.query('SELECT SLEEP(0.1)', 'probe')]);
    proxy.hang();
    for (const configured of [false, true]) {
      const started = Date.now();
      await expect(s.query('SELECT 2', 'read a page', configured)).rejects.toMatchObject({ code: 'SOURCE_UNAVAILABLE', retryable: true });
      // One bound, not one per statement of the transaction around configured SQL.
      expect(Date.now() - started).toBeLessThan(1000 + 900);
    }
  }, 20_000);

  it('does not cut a statement that runs longer than the grace but within its statement timeout', async () => {
    proxy = await TcpProxy.start(Number(new URL(MYSQL_URL).port || 3306));
    source = new MysqlSource({ name: 'm', url: through(proxy), poolSize: 1, statementTimeoutMs: 3000, answerGraceMs: 200 });
    const rows = await source.query('SELECT SLEEP(1.5)', 'a long page');
    expect(rows.map((r) => r.map((v) => v?.toString('utf8')))).toEqual([['0']]);
  }, 20_000);
});
