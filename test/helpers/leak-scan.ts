import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startWebServer } from '../../src/http/server.js';
import { EXTRACT_QUEUE, PUSH_QUEUE } from '../../src/queue/jobs.js';
import { REDIS_URL } from './services.js';

/**
 * What a test can scan for values that must never appear: every Redis key of a prefix with its whole value, the
 * answers of the dashboard's API, every log line.
 */
export async function redisDump(prefix: string): Promise<Array<[string, string]>> {
  const redis = new Redis(REDIS_URL);
  try {
    const out: Array<[string, string]> = [];
    for (const key of await redis.keys(`${prefix}:*`)) {
      const type = await redis.type(key);
      const dump =
        type === 'string'
          ? await redis.get(key)
          : type === 'hash'
            ? JSON.stringify(await redis.hgetall(key))
            : type === 'list'
              ? JSON.stringify(await redis.lrange(key, 0, -1))
              : type === 'zset'
                ? JSON.stringify(await redis.zrange(key, 0, -1))
                : type === 'set'
                  ? JSON.stringify(await redis.smembers(key))
                  : type === 'stream'
                    ? JSON.stringify(await redis.xrange(key, '-', '+'))
                    : `unreadable type ${type}`;
      out.push([key, dump ?? '']);
    }
    return out;
  } finally {
    await redis.quit();
  }
}

/** A logger that keeps every line it writes (at every level), for scanning. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger('trace', {}, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

/**
 * The dashboard's API answers for every queue and job state, and the detail and logs of every job it lists, from a
 * real web server on port 0 over the prefix's queues.
 */
export async function bullBoardDump(prefix: string): Promise<Array<[string, string]>> {
  const queues = [EXTRACT_QUEUE, PUSH_QUEUE].map((name) => new Queue(name, { connection: { url: REDIS_URL }, prefix }));
  const web = await startWebServer({
    host: '127.0.0.1',
    port: 0,
    auth: { token: 'scan' },
    metrics: createMetrics(),
    readiness: [],
    queues,
    logger: createLogger('silent'),
  });
  const get = async (path: string): Promise<string> => {
    const res = await fetch(`${web.url}/admin/queues${path}`, { headers: { authorization: 'Bearer scan' } });
    if (res.status !== 200) throw new Error(`GET ${path}: HTTP ${res.status}`);
    return res.text();
  };
  try {
    const out: Array<[string, string]> = [];
    for (const name of [EXTRACT_QUEUE, PUSH_QUEUE]) {
      const path = `/api/queues?activeQueue=${name}&status=latest&page=1&jobsPerPage=1000`;
      const text = await get(path);
      out.push([path, text]);
      const listed = (JSON.parse(text) as { queues: Array<{ name: string; jobs: Array<{ id: string }> }> }).queues.find((q) => q.name === name)!;
      for (const job of listed.jobs) {
        for (const detail of [`/api/queues/${name}/${encodeURIComponent(job.id)}`, `/api/queues/${name}/${encodeURIComponent(job.id)}/logs`])
          out.push([detail, await get(detail)]);
      }
    }
    return out;
  } finally {
    await web.close();
    await Promise.all(queues.map((q) => q.close()));
  }
}

/** Every occurrence of every needle in the texts, as `[needle, where]`. */
export function hits(needles: readonly string[], texts: ReadonlyArray<readonly [string, string]>): Array<[string, string]> {
  const found: Array<[string, string]> = [];
  for (const [where, text] of texts) for (const n of needles) if (text.includes(n)) found.push([n, where]);
  return found;
}
