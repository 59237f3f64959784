import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/** docker-compose.yml as Compose reads it; the file is parsed, not run (no Docker engine in tests). */
interface Service {
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

const CREDENTIAL = /PASSWORD|TOKEN|SECRET|API_KEY/;

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
      expect.arrayContaining(['PUSHSYNC_WEB_TOKEN', 'DEFINITE_API_KEY', 'POSTGRES_PASSWORD', 'DATABASE_URL']),
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
});
