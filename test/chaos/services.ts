import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, chownSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';

/** Private Redis and PostgreSQL for the chaos suite, so restarting them disturbs nothing else. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export class ChaosRedis {
  private proc: ChildProcess | undefined;
  readonly url: string;

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async start(): Promise<ChaosRedis> {
    const r = new ChaosRedis(await freePort(), mkdtempSync(join(tmpdir(), 'chaos-redis-')));
    await r.up();
    return r;
  }

  async up(): Promise<void> {
    this.proc = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 100; i++) {
      const c = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      try {
        await c.connect();
        if ((await c.ping()) === 'PONG') {
          c.disconnect();
          return;
        }
      } catch {
        c.disconnect();
      }
      await sleep(100);
    }
    throw new Error('chaos redis did not start');
  }

  /** A clean shutdown: with AOF (fsync always) nothing acknowledged is lost. */
  async restart(downMs: number): Promise<void> {
    const c = new Redis(this.url, { retryStrategy: () => null });
    c.on('error', () => {});
    await c.call('SHUTDOWN').catch(() => undefined);
    c.disconnect();
    await new Promise((r) => (this.proc?.exitCode !== null ? r(undefined) : this.proc.once('exit', r)));
    await sleep(downMs);
    await this.up();
  }

  async usedMemory(): Promise<number> {
    const c = new Redis(this.url, { retryStrategy: () => null });
    c.on('error', () => {});
    try {
      const info = await c.info('memory');
      return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
    } finally {
      c.disconnect();
    }
  }

  async stop(): Promise<void> {
    this.proc?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const PG_BIN = execFileSync('bash', ['-c', 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1']).toString().trim();

function asPostgres(cmd: string, args: string[]): void {
  execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/${cmd}`, ...args], { stdio: 'ignore' });
}

export class ChaosPostgres {
  readonly url: string;

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  }

  /** `logical`: wal_level = logical, for change data capture. */
  static async start(options: { logical?: boolean } = {}): Promise<ChaosPostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-pg-'));
    chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
    const p = new ChaosPostgres(await freePort(), dir);
    asPostgres('initdb', ['-D', dir, '-U', 'postgres', '--auth=trust']);
    appendFileSync(
      `${dir}/postgresql.conf`,
      `\nport = ${p.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${dir}'\nfsync = off\nmax_connections = 200\n`,
    );
    if (options.logical) appendFileSync(`${dir}/postgresql.conf`, `wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n`);
    asPostgres('pg_ctl', ['-D', dir, '-l', `${dir}/log`, '-w', 'start']);
    return p;
  }

  async restart(): Promise<void> {
    asPostgres('pg_ctl', ['-D', this.dir, '-l', `${this.dir}/log`, '-w', '-m', 'fast', 'restart']);
  }

  async client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: this.url });
    c.on('error', () => {});
    await c.connect();
    return c;
  }

  async stop(): Promise<void> {
    try {
      asPostgres('pg_ctl', ['-D', this.dir, '-w', '-m', 'immediate', 'stop']);
    } catch {
      // already down
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
