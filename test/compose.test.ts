import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';
import { freePort, runPushsync } from './helpers/cli.js';

/** docker-compose.yml as Compose reads it; the file is parsed, not run (no Docker engine in tests). */
interface Service {
  build?: unknown;
  image?: string;
  pull_policy?: string;
  command?: string[];
  healthcheck?: { test: string[] };
  ports?: string[];
  profiles?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
}
const COMPOSE_FILE = new URL('../docker-compose.yml', import.meta.url).pathname;
const compose = parse(readFileSync(COMPOSE_FILE, 'utf8')) as { services: Record<string, Service> };
const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');

/** Compose's interpolation: `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (which fails when VAR is unset). */
function interpolate(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (op === '?') throw new Error(`${name} is required: ${arg}`);
    return op === '-' ? (arg ?? '') : '';
  });
}

/** The host address a published port binds to (`[ip:]host:container`), or undefined for every interface. */
function bindAddress(port: string): string | undefined {
  const parts = port.split(':');
  return parts.length === 3 ? parts[0] : undefined;
}

const CREDENTIAL = /PASSWORD|PWD|TOKEN|SECRET|API_KEY/;

describe('docker-compose.yml', () => {
  const services = Object.entries(compose.services);
  const published = services.flatMap(([name, s]) => (s.ports ?? []).map((port) => ({ name, port })));

  it('publishes every port on 127.0.0.1 unless PUSHSYNC_BIND says otherwise', () => {
    expect(published.length).toBeGreaterThan(0);
    for (const { name, port } of published) {
      expect({ name, bind: bindAddress(interpolate(port, {})) }).toEqual({ name, bind: '127.0.0.1' });
      expect({ name, bind: bindAddress(interpolate(port, { PUSHSYNC_BIND: '0.0.0.0' })) }).toEqual({ name, bind: '0.0.0.0' });
    }
  });

  it('has no default for any credential: each must be set in the environment or .env', () => {
    const credentials = services.flatMap(([name, s]) =>
      Object.entries(s.environment ?? {})
        .filter(([key, value]) => CREDENTIAL.test(key) || /:\/\/[^@]*:[^@]*@/.test(String(value)))
        .map(([key, value]) => ({ name, key, value: String(value) })),
    );
    expect(credentials.map((c) => c.key)).toEqual(
      expect.arrayContaining([
        'PUSHSYNC_WEB_TOKEN',
        'DEFINITE_API_KEY',
        'POSTGRES_PASSWORD',
        'DATABASE_URL',
        'MARIADB_PASSWORD',
        'MARIADB_ROOT_PASSWORD',
        'MYSQL_PWD',
      ]),
    );
    for (const { name, key, value } of credentials) {
      expect(() => interpolate(value, {}), `${name}.${key} has a default`).toThrow(/is required/);
    }
  });

  it('runs Prometheus and Grafana only in the monitoring profile, with the files of deploy/', () => {
    for (const name of ['prometheus', 'grafana']) {
      const service = compose.services[name]!;
      expect(service.profiles).toEqual(['monitoring']);
      for (const volume of (service.volumes ?? []).filter((v) => v.startsWith('./'))) {
        expect(existsSync(new URL(`../${volume.split(':')[0]}`, import.meta.url)), volume).toBe(true);
      }
    }
    expect(compose.services.pushsync!.profiles).toBeUndefined();
  });

  it('builds one image, which both the sink and pushsync run', () => {
    const built = services.filter(([, s]) => s.build !== undefined).map(([name]) => name);
    expect(built).toEqual(['pushsync']);
    const image = interpolate(compose.services.pushsync!.image!, {});
    expect(image).toBe('pushsync:local');
    expect(interpolate(compose.services.sink!.image!, {})).toBe(image);
    // The sink must not be pulled from a registry under that name: it is the image built here.
    expect(compose.services.sink!.pull_policy).toBe('never');
    for (const name of ['sink-mariadb', 'pushsync-mariadb']) {
      expect({ name, image: interpolate(compose.services[name]!.image!, {}), pull: compose.services[name]!.pull_policy }).toEqual({
        name,
        image,
        pull: 'never',
      });
    }
    expect(interpolate(compose.services.sink!.image!, { PUSHSYNC_IMAGE: 'registry.example/pushsync:1' })).toBe('registry.example/pushsync:1');
  });

  it('health-checks pushsync on the web.port of its config, and publishes that port', () => {
    const service = compose.services.pushsync!;
    expect(service.healthcheck?.test).toEqual(['CMD', 'node', 'dist/cli.js', 'healthcheck']);
    expect(dockerfile).toMatch(/HEALTHCHECK[^\n]*\\\n\s*CMD \["node", "dist\/cli\.js", "healthcheck"\]/);
    expect(dockerfile).not.toContain('PUSHSYNC_WEB_PORT');
    // The check and the start command read the config named by PUSHSYNC_CONFIG, the file mounted there.
    const configPath = service.environment!.PUSHSYNC_CONFIG!;
    const mounted = (service.volumes ?? []).find((v) => v.split(':')[1] === configPath);
    expect(mounted, `a volume mounted at ${configPath}`).toBeDefined();
    expect(service.command).toEqual(['start']);
    for (const port of ['3000', '4100']) {
      const env = { PUSHSYNC_WEB_PORT: port };
      const containerEnv = Object.fromEntries(
        Object.entries(service.environment!).map(([k, v]) => [
          k,
          interpolate(String(v), { ...env, PUSHSYNC_DEMO_PG_PASSWORD: 'p', PUSHSYNC_DEMO_API_KEY: 'k', PUSHSYNC_WEB_TOKEN: 't'.repeat(16) }),
        ]),
      );
      const config = loadConfig(new URL(`../${mounted!.split(':')[0]}`, import.meta.url).pathname, containerEnv, { needs: [] });
      expect(config.web.port).toBe(Number(port));
      const published = interpolate(service.ports![0]!, env).split(':');
      expect(published.slice(1)).toEqual([port, port]);
    }
  });

  it.runIf(spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0)('is a valid Compose file (docker-compose config)', () => {
    const env = {
      ...process.env,
      PUSHSYNC_WEB_TOKEN: 't'.repeat(16),
      PUSHSYNC_DEMO_API_KEY: 'k',
      PUSHSYNC_DEMO_PG_PASSWORD: 'p',
      PUSHSYNC_GRAFANA_PASSWORD: 'g',
      PUSHSYNC_DEMO_MARIADB_PASSWORD: 'm',
      PUSHSYNC_DEMO_MARIADB_ROOT_PASSWORD: 'r',
    };
    const out = execFileSync('docker-compose', ['-f', COMPOSE_FILE, 'config'], { env, encoding: 'utf8' });
    expect(out).toContain('image: pushsync:local');
  });

  it('runs the MariaDB demo only in the mariadb profile, beside the Postgres demo, with the files it mounts', () => {
    const mariadbServices = ['mariadb', 'mariadb-writer', 'sink-mariadb', 'pushsync-mariadb'];
    for (const name of mariadbServices) {
      const service = compose.services[name]!;
      expect({ name, profiles: service.profiles }).toEqual({ name, profiles: ['mariadb'] });
      for (const volume of (service.volumes ?? []).filter((v) => v.startsWith('./'))) {
        expect(existsSync(new URL(`../${volume.split(':')[0]}`, import.meta.url)), volume).toBe(true);
      }
    }
    // Both demos up at once: no host port twice.
    const hostPorts = published.map(({ port }) => interpolate(port, {}).split(':').slice(0, 2).join(':'));
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });

  it('starts MariaDB with the binary log as binlog capture needs, and grants the pushsync user what check asks for', () => {
    const command = compose.services.mariadb!.command ?? [];
    expect(command).toEqual(
      expect.arrayContaining([
        '--binlog-format=ROW',
        '--binlog-row-image=FULL',
        expect.stringMatching(/^--log-bin/),
        expect.stringMatching(/^--server-id=[1-9]/),
      ]),
    );
    const user = compose.services.mariadb!.environment!.MARIADB_USER!;
    const grants = readFileSync(new URL('../demo/mariadb/grants.sql', import.meta.url), 'utf8');
    expect(grants).toMatch(new RegExp(`^GRANT PROCESS, REPLICATION SLAVE, BINLOG MONITOR ON \\*\\.\\* TO '${user}'@'%';$`, 'm'));
  });

  it("points the MariaDB demo's pushsync at the compose MariaDB with a config pushsync accepts, under a Redis prefix of its own", () => {
    const secrets = { PUSHSYNC_DEMO_MARIADB_PASSWORD: 'maria-secret', PUSHSYNC_DEMO_API_KEY: 'key', PUSHSYNC_WEB_TOKEN: '0123456789abcdef' };
    const service = compose.services['pushsync-mariadb']!;
    const env = Object.fromEntries(Object.entries(service.environment!).map(([k, v]) => [k, interpolate(String(v), secrets)]));
    const db = compose.services.mariadb!.environment!;
    const url = new URL(env.DATABASE_URL!);
    expect([url.protocol, url.hostname, url.username, decodeURIComponent(url.password), url.pathname]).toEqual([
      'mysql:',
      'mariadb',
      db.MARIADB_USER,
      'maria-secret',
      `/${db.MARIADB_DATABASE}`,
    ]);
    expect(env.DEFINITE_STREAM_URL).toBe('http://sink-mariadb:8787/v2/stream');
    expect(env.PUSHSYNC_PREFIX).not.toBe('pushsync-demo');
    const mounted = service.volumes!.find((v) => v.endsWith(':/config/pushsync.yaml:ro'))!.split(':')[0]!;
    expect(mounted).toBe('./demo/pushsync.mariadb.yaml');
    const config = loadConfig(new URL(`../${mounted}`, import.meta.url).pathname, env);
    expect(config.sources.map((s) => [s.kind, s.url])).toEqual([['mysql', env.DATABASE_URL]]);
    expect(config.redis.prefix).toBe(env.PUSHSYNC_PREFIX);
  });
});

describe('pushsync healthcheck', () => {
  it("follows the config's web.port: 0 when /healthz answers 200 there, 1 otherwise", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-health-'));
    let status = 200;
    const server = createServer((req, res) => {
      res.writeHead(req.url === '/healthz' ? status : 404).end();
    });
    const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
    const config = (p: number): string => {
      const path = join(dir, `c${p}.yaml`);
      writeFileSync(
        path,
        `destination: { apiKey: \${DEFINITE_API_KEY} }\nsources: [{ name: s, kind: postgres, url: \${DATABASE_URL}, tables: [{ name: t, watermark: u }] }]\nweb: { port: ${p} }\n`,
      );
      return path;
    };
    try {
      const ok = await runPushsync(['-c', config(port), 'healthcheck']);
      expect(ok.stdout).toBe(`ok http://127.0.0.1:${port}/healthz\n`);
      expect(ok.code).toBe(0);
      const elsewhere = await runPushsync(['-c', config(await freePort()), 'healthcheck']);
      expect(elsewhere.code).toBe(1);
      expect(elsewhere.stderr).toMatch(/^pushsync: unhealthy: /);
      status = 503;
      const failing = await runPushsync(['-c', config(port), 'healthcheck']);
      expect(failing.code).toBe(1);
      expect(failing.stderr).toBe(`pushsync: unhealthy: http://127.0.0.1:${port}/healthz answered HTTP 503\n`);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
