import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';

/** docker-compose.yml as Compose reads it; the file is parsed, not run (no Docker engine in tests). */
interface Service {
  command?: string[];
  ports?: string[];
  profiles?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
}
const compose = parse(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8')) as { services: Record<string, Service> };

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
