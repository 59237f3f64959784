import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from '../chaos/services.js';

/**
 * Private Redis Cluster and Redis Sentinel groups from Debian's redis-server (`redis-server --sentinel` is what
 * the redis-sentinel package links), on free ports in a temporary directory: each start makes new ones, and stop
 * removes them, so a run left behind never disturbs the next.
 */

interface Server {
  port: number;
  proc: ChildProcess;
}

function startServer(dir: string, name: string, port: number, args: string[]): Server {
  const proc = spawn('redis-server', [...args, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--logfile', join(dir, `${name}.log`)], {
    stdio: 'ignore',
  });
  return { port, proc };
}

/** Resolves once `check` holds (a check that throws counts as not yet), failing with `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Runs `fn` on a short-lived connection to one server. */
async function on<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

function kill(s: Server, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    s.proc.once('exit', () => resolve());
    s.proc.kill(signal);
  });
}

const DATA_NODE = ['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'];

function dataNode(dir: string, i: number, port: number, role: string[]): Server {
  return startServer(dir, `data${i}`, port, [...DATA_NODE, '--appendfilename', `data${i}.aof`, '--appenddirname', `aof-${i}`, ...role]);
}

export class TestRedisCluster {
  private constructor(
    private readonly dir: string,
    readonly servers: Server[],
  ) {}

  /** `host:port` of every node, for `redis.cluster.nodes`. */
  get nodes(): string[] {
    return this.servers.map((s) => `127.0.0.1:${s.port}`);
  }

  /** `masters` masters with `replicasPerMaster` replicas each, slots spread by `redis-cli --cluster create`. */
  static async start(masters = 3, replicasPerMaster = 0): Promise<TestRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-cluster-'));
    const servers: Server[] = [];
    for (let i = 0; i < masters * (1 + replicasPerMaster); i++) {
      const [port, bus] = [await freePort(), await freePort()];
      servers.push(
        startServer(dir, `node${i}`, port, [
          ...DATA_NODE,
          '--appendfilename',
          `node${i}.aof`,
          '--appenddirname',
          `aof-${i}`,
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${i}.conf`),
          '--cluster-node-timeout',
          '2000',
          '--cluster-port',
          String(bus),
        ]),
      );
    }
    const cluster = new TestRedisCluster(dir, servers);
    try {
      for (const s of servers) await until(`redis node ${s.port}`, () => on(s.port, async (r) => (await r.ping()) === 'PONG'));
      execFileSync('redis-cli', ['--cluster', 'create', ...cluster.nodes, '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'], {
        stdio: 'ignore',
        timeout: 60_000,
      });
      for (const s of servers) {
        await until(`cluster state ok on ${s.port}`, () => on(s.port, async (r) => /cluster_state:ok/.test(await r.cluster('INFO'))));
      }
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** The port of the master that serves `key`'s slot now. */
  async masterOf(key: string): Promise<number> {
    return on(this.servers.find((s) => s.proc.exitCode === null && s.proc.signalCode === null)!.port, async (r) => {
      const slot = (await r.cluster('KEYSLOT', key)) as number;
      const ranges = (await r.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
      return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
    });
  }

  async kill(port: number): Promise<void> {
    await kill(this.servers.find((s) => s.port === port)!);
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => kill(s)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const SENTINEL_MASTER = 'pushsync';

export class TestSentinelGroup {
  private constructor(
    private readonly dir: string,
    /** Data nodes: the first started as master, the others as its replicas. */
    readonly servers: Server[],
    readonly sentinels: Server[],
    private readonly startData: (i: number, port: number, role: string[]) => Server,
  ) {}

  /** `host:port` of every sentinel, for `redis.sentinel.nodes`. */
  get nodes(): string[] {
    return this.sentinels.map((s) => `127.0.0.1:${s.port}`);
  }

  /**
   * One master, `replicas` replicas and `sentinels` sentinels (quorum: a majority) that fail over within about
   * two seconds of the master going away.
   */
  static async start(replicas = 2, sentinels = 3): Promise<TestSentinelGroup> {
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-sentinel-'));
    const servers: Server[] = [];
    const masterPort = await freePort();
    for (let i = 0; i <= replicas; i++) {
      const port = i === 0 ? masterPort : await freePort();
      const role = i === 0 ? [] : ['--replicaof', '127.0.0.1', String(masterPort)];
      servers.push(dataNode(dir, i, port, role));
    }
    const group = new TestSentinelGroup(dir, servers, [], (i, port, role) => dataNode(dir, i, port, role));
    try {
      for (const s of servers) await until(`redis ${s.port}`, () => on(s.port, async (r) => (await r.ping()) === 'PONG'));
      await until('replicas in sync', () =>
        on(masterPort, async (r) => Number(/connected_slaves:(\d+)/.exec(await r.info('replication'))?.[1]) === replicas),
      );
      const quorum = Math.floor(sentinels / 2) + 1;
      for (let i = 0; i < sentinels; i++) {
        const port = await freePort();
        const conf = join(dir, `sentinel${i}.conf`);
        writeFileSync(
          conf,
          [
            `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${masterPort} ${quorum}`,
            `sentinel down-after-milliseconds ${SENTINEL_MASTER} 1000`,
            `sentinel failover-timeout ${SENTINEL_MASTER} 10000`,
            `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
            '',
          ].join('\n'),
        );
        group.sentinels.push(startServer(dir, `sentinel${i}`, port, [conf, '--sentinel']));
      }
      for (const s of group.sentinels) {
        await until(`sentinel ${s.port} to see the group`, () =>
          on(s.port, async (r) => {
            const fields = (await r.call('SENTINEL', 'MASTER', SENTINEL_MASTER)) as string[];
            const m = new Map<string, string>();
            for (let k = 0; k + 1 < fields.length; k += 2) m.set(fields[k]!, fields[k + 1]!);
            return Number(m.get('num-slaves')) === replicas && Number(m.get('num-other-sentinels')) === sentinels - 1;
          }),
        );
      }
    } catch (err) {
      await group.stop();
      throw err;
    }
    return group;
  }

  private readonly paused = new Set<Server>();

  /**
   * SIGSTOPs sentinel `i`: connections to it are accepted (by the kernel) but never answered, as a sentinel that
   * hangs. `resumeSentinel` lets it go on.
   */
  pauseSentinel(i: number): void {
    const s = this.sentinels[i]!;
    this.paused.add(s);
    s.proc.kill('SIGSTOP');
  }

  resumeSentinel(i: number): void {
    const s = this.sentinels[i]!;
    s.proc.kill('SIGCONT');
    this.paused.delete(s);
  }

  /** The port of the master the sentinels name now. */
  async masterPort(): Promise<number> {
    const alive = this.sentinels.find((s) => s.proc.exitCode === null && !this.paused.has(s))!;
    const [, port] = (await on(alive.port, (r) => r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER))) as [string, string];
    return Number(port);
  }

  /** SIGKILLs the current master; resolves with its port once the sentinels have promoted another. */
  async killMaster(): Promise<{ killed: number; promoted: number }> {
    const killed = await this.masterPort();
    await kill(this.servers.find((s) => s.port === killed)!);
    let promoted = killed;
    await until('a sentinel failover', async () => {
      promoted = await this.masterPort();
      if (promoted === killed) return false;
      return on(promoted, async (r) => /role:master/.test(await r.info('replication')));
    });
    return { killed, promoted };
  }

  /** Starts a killed data node again, as a replica of the current master (as an operator would bring it back). */
  async revive(port: number): Promise<void> {
    const i = this.servers.findIndex((s) => s.port === port);
    const master = await this.masterPort();
    this.servers[i] = this.startData(i, port, ['--replicaof', '127.0.0.1', String(master)]);
    await until(`revived ${port} in sync`, () => on(port, async (r) => /master_link_status:up/.test(await r.info('replication'))));
  }

  async stop(): Promise<void> {
    for (const s of this.paused) s.proc.kill('SIGCONT');
    await Promise.all([...this.sentinels, ...this.servers].map((s) => kill(s)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
