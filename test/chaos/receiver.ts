import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { arrayElements, objectMembers } from '../../src/core/json-scan.js';

/**
 * A Stream API endpoint that misbehaves on a seeded schedule: 5xx, 429 with Retry-After, connection resets,
 * delays, ambiguous commits (stored, then the connection drops), and an outage window where everything fails.
 */
export interface ChaosReceiver {
  url: string;
  /** Raw JSON text of every row stored. */
  rows: string[];
  faults: Record<string, number>;
  setOutage(on: boolean): void;
  close(): Promise<void>;
}

export async function startChaosReceiver(random: () => number, apiKey: string): Promise<ChaosReceiver> {
  const rows: string[] = [];
  const faults: Record<string, number> = { ok: 0, '503': 0, '429': 0, reset: 0, ambiguous: 0, delayed: 0, outage: 0 };
  let outage = false;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${apiKey}`) {
        res.writeHead(401).end();
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      const data = objectMembers(body).find((m) => m.rawKey === '"data"')!;
      const batch = arrayElements(body.slice(data.valueStart, data.valueEnd)).map(([a, b]) => body.slice(data.valueStart + a, data.valueStart + b));
      const answer = (): void => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            success: true,
            request_id: String(rows.length),
            accepted: true,
            successful_rows: batch.length,
            rejected_rows: 0,
            errors: [],
            warnings: [],
          }),
        );
      };
      if (outage) {
        faults.outage! += 1;
        res.writeHead(503).end('{"success":false,"errors":["outage"]}');
        return;
      }
      const roll = random();
      if (roll < 0.06) {
        faults['503']! += 1;
        res.writeHead(503).end('{"success":false}');
      } else if (roll < 0.1) {
        faults['429']! += 1;
        res.writeHead(429, { 'retry-after': '1' }).end('{"success":false}');
      } else if (roll < 0.14) {
        faults.reset! += 1;
        req.socket.destroy();
      } else if (roll < 0.18) {
        faults.ambiguous! += 1;
        rows.push(...batch);
        req.socket.destroy();
      } else if (roll < 0.25) {
        faults.delayed! += 1;
        rows.push(...batch);
        setTimeout(answer, Math.floor(random() * 400));
      } else {
        faults.ok! += 1;
        rows.push(...batch);
        answer();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v2/stream`,
    rows,
    faults,
    setOutage: (on) => {
      outage = on;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
