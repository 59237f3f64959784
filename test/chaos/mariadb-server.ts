import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { freePort } from './services.js';

const USER = 'chaos';
const PASSWORD = 'chaos';
const DATABASE = 'chaos';

/**
 * A private MariaDB for the chaos suite (its own datadir, socket and port), so restarting it disturbs nothing else.
 * `binlog`: log_bin with binlog_format=ROW, binlog_row_image=FULL and a server_id, as binlog capture needs (the
 * settings of scripts/mariadb-binlog.sh).
 */
export class ChaosMariadb {
  readonly url: string;
  private proc: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {
    this.url = `mysql://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`;
  }

  private get cnf(): string {
    return join(this.dir, 'my.cnf');
  }

  private get socket(): string {
    return join(this.dir, 'mysqld.sock');
  }

  static async start(options: { binlog: boolean }): Promise<ChaosMariadb> {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-mariadb-'));
    const m = new ChaosMariadb(await freePort(), dir);
    mkdirSync(join(dir, 'binlog'));
    const uid = Number(execFileSync('id', ['-u', 'mysql']).toString());
    const gid = Number(execFileSync('id', ['-g', 'mysql']).toString());
    for (const d of [dir, join(dir, 'binlog')]) chownSync(d, uid, gid);
    const binlog = options.binlog
      ? `server_id = 1\nlog_bin = ${dir}/binlog/binlog\nbinlog_format = ROW\nbinlog_row_image = FULL\nbinlog_expire_logs_seconds = 86400\n`
      : '';
    writeFileSync(
      m.cnf,
      `[mariadbd]
user = mysql
datadir = ${dir}/data
socket = ${m.socket}
pid-file = ${dir}/mysqld.pid
port = ${m.port}
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
log-error = ${dir}/server.err
max_connections = 200
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
${binlog}`,
    );
    execFileSync('mariadb-install-db', [`--defaults-file=${m.cnf}`, '--auth-root-authentication-method=socket'], { stdio: 'ignore' });
    await m.up();
    execFileSync('mariadb', [
      '--no-defaults',
      `--socket=${m.socket}`,
      '-uroot',
      '-e',
      `CREATE USER '${USER}'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}'; GRANT ALL PRIVILEGES ON *.* TO '${USER}'@'127.0.0.1'; ` +
        `CREATE DATABASE ${DATABASE} CHARACTER SET utf8mb4`,
    ]);
    return m;
  }

  private async up(): Promise<void> {
    this.proc = spawn('/usr/sbin/mariadbd', [`--defaults-file=${this.cnf}`], { stdio: 'ignore' });
    for (let i = 0; i < 300; i++) {
      try {
        execFileSync('mariadb-admin', ['--no-defaults', `--socket=${this.socket}`, '-uroot', 'ping', '--silent'], { stdio: 'ignore' });
        return;
      } catch {
        if (this.proc.exitCode !== null) throw new Error(`chaos mariadb exited; see ${this.dir}/server.err`);
        await sleep(100);
      }
    }
    throw new Error('chaos mariadb did not start');
  }

  private async down(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    // SIGTERM is the server's normal shutdown: open transactions roll back, committed ones stay.
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r)));
  }

  async restart(downMs: number): Promise<void> {
    await this.down();
    await sleep(downMs);
    await this.up();
  }

  /** A connection in UTC that reads values as text. */
  async client(): Promise<mysql.Connection> {
    const c = await mysql.createConnection({
      host: '127.0.0.1',
      port: this.port,
      user: USER,
      password: PASSWORD,
      database: DATABASE,
      charset: 'UTF8MB4_GENERAL_CI',
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      multipleStatements: true,
    });
    c.on('error', () => {});
    await c.query(`SET time_zone = '+00:00'`);
    return c;
  }

  async stop(): Promise<void> {
    this.proc?.kill('SIGKILL');
    if (this.proc && this.proc.exitCode === null) await new Promise((r) => this.proc!.once('exit', r));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
