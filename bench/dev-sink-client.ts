import { EncodedRecords } from '../src/core/encoded-records.js';
import { StreamApiClient } from '../src/destinations/stream-api.js';
import { benchRecords } from './dev-sink-records.js';

/**
 * The sending side of `npm run bench:dev-sink`, in a process of its own as pushsync is when it pushes to a dev sink
 * (the demo runs the sink as its own process): so the sink's rate and CPU are its own, and the client's work does
 * not take turns with the sink on one event loop. The parent sends `{ rows, batch, concurrency, target }` once (the
 * child answers `{ ready }`), `{ url }` for each sink (answered `{ connected }`), then `{ from, to }` per wave of
 * requests (answered `{ sent, cpuSeconds }`).
 */
interface Setup {
  url: string;
  rows: number;
  batch: number;
  concurrency: number;
  target: string;
}

const send = (m: unknown): void => void process.send!(m);
let client: StreamApiClient | undefined;
let bodies: EncodedRecords[] = [];
let concurrency = 1;
let target = '';

process.on('message', (m: Partial<Setup> & { from?: number; to?: number }) => {
  void (async () => {
    if (m.rows !== undefined) {
      const records = await benchRecords(m.rows);
      bodies = [];
      for (let i = 0; i < records.length; i += m.batch!) {
        const encoded = new EncodedRecords();
        for (const record of records.slice(i, i + m.batch!)) encoded.commit(encoded.stage(record));
        bodies.push(encoded);
      }
      concurrency = m.concurrency!;
      target = m.target!;
      send({ ready: bodies.length });
      return;
    }
    if (m.url !== undefined) {
      await client?.close();
      client = new StreamApiClient({ url: m.url, apiKey: 'bench', timeoutMs: 120_000, compression: 'none', wait: false, tags: {} });
      send({ connected: true });
      return;
    }
    const started = process.cpuUsage();
    let next = m.from!;
    const to = m.to!;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < to) {
          const records = bodies[next++]!;
          await client!.sendEncoded(target, records, 0, records.count);
        }
      }),
    );
    const used = process.cpuUsage(started);
    send({ sent: to - m.from!, cpuSeconds: (used.user + used.system) / 1e6 });
  })().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
});
process.on('disconnect', () => {
  void client?.close().finally(() => process.exit(0));
});
