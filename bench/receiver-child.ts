import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ReceiverCounts {
  rows: number;
  requests: number;
  /** CPU the receiver process has used since it started. */
  cpuSeconds: number;
  /** Request body bytes as received (compressed when gzip) and after inflating, since the last reset. */
  wireBytes: number;
  bodyBytes: number;
}

/** A simulated remote destination (see bench/receiver.ts). */
export interface ReceiverOptions {
  /** Every answer waits this long after its body arrived. @defaultValue 0 */
  latencyMs?: number;
  /** Bytes per second of one link all requests share; 0 = unlimited. @defaultValue 0 */
  bandwidth?: number;
}

/** Handle on the receiver child process (bench/receiver.ts). */
export interface ReceiverChild {
  url: string;
  reset(): Promise<void>;
  /** While down, every request is answered 503. */
  setDown(down: boolean): Promise<void>;
  counts(): Promise<ReceiverCounts>;
  /** From now on, note each accepted record's delay after its `column` (a UTC timestamp); clears earlier ones. */
  trackLatency(column: string): Promise<void>;
  /** Milliseconds from each tracked record's timestamp to its acceptance, in arrival order. */
  latencies(): Promise<number[]>;
  close(): Promise<void>;
}

function nextMessage<T>(child: ChildProcess, accept: (m: Record<string, unknown>) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (typeof m === 'object' && m !== null && accept(m as Record<string, unknown>)) {
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m as T);
      }
    };
    const onExit = (code: number | null): void => reject(new Error(`receiver process exited with code ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** `all`: the receiver parses every body; `sample` (the default): every eighth, the others counted by a byte search. */
export const RECEIVER_PARSE = process.env.BENCH_RECEIVER_PARSE ?? 'sample';
if (RECEIVER_PARSE !== 'all' && RECEIVER_PARSE !== 'sample') throw new Error(`BENCH_RECEIVER_PARSE must be all or sample, got ${RECEIVER_PARSE}`);

/** Forks the receiver with this process's loader flags (tsx), so the child runs the TypeScript file as is. */
export async function startReceiverChild(options: ReceiverOptions = {}): Promise<ReceiverChild> {
  const env = {
    ...process.env,
    RECEIVER_LATENCY_MS: String(options.latencyMs ?? 0),
    RECEIVER_BANDWIDTH: String(options.bandwidth ?? 0),
    RECEIVER_PARSE: RECEIVER_PARSE,
  };
  const child = fork(fileURLToPath(new URL('./receiver.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env });
  const { port } = await nextMessage<{ port: number }>(child, (m) => typeof m.port === 'number');
  return {
    url: `http://127.0.0.1:${port}/v2/stream`,
    reset: async () => {
      const done = nextMessage(child, (m) => m.reset === true);
      child.send({ type: 'reset' });
      await done;
    },
    setDown: async (down) => {
      const done = nextMessage(child, (m) => typeof m.down === 'boolean');
      child.send({ type: 'down', down });
      await done;
    },
    counts: async () => {
      const reply = nextMessage<ReceiverCounts>(child, (m) => typeof m.rows === 'number');
      child.send({ type: 'count' });
      return reply;
    },
    trackLatency: async (column: string) => {
      const done = nextMessage(child, (m) => m.latency === true);
      child.send({ type: 'latency', column });
      await done;
    },
    latencies: async () => {
      const reply = nextMessage<{ latencies: number[] }>(child, (m) => Array.isArray(m.latencies));
      child.send({ type: 'latencies' });
      return (await reply).latencies;
    },
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.disconnect();
      const timer = setTimeout(() => child.kill(), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}
