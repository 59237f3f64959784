import { Worker } from 'node:worker_threads';
import type { StreamLimits } from '../core/batching.js';
import { AppError, type ErrorCode } from '../core/errors.js';
import type { PreparedRequest } from './dev-sink-request.js';

/**
 * Runs the dev sink's request checks and row splitting (prepareRequest) on a worker thread, so that the main
 * thread, which appends to DuckDB, serves HTTP and answers, does only that: splitting and appending a request's
 * rows each cost about as much as the other, and the two overlap across requests.
 */

export interface PrepareAsk {
  id: number;
  /** Transferred: the caller's view of it is detached. */
  body: Uint8Array;
  compressed: boolean;
}

export type PrepareAnswer =
  | { id: number; prepared: PreparedRequest }
  /** The request is refused (an AppError with its status and reason). */
  | { id: number; refusal: { code: ErrorCode; message: string; details: Record<string, unknown> | undefined } }
  /** prepareRequest failed for another reason: a bug, answered as a 500. */
  | { id: number; failure: string };

interface Pending {
  resolve(prepared: PreparedRequest): void;
  reject(err: Error): void;
}

/** The worker's module: compiled JavaScript, or (in development and tests) TypeScript loaded through tsx. */
function startWorker(limits: StreamLimits): Worker {
  const here = import.meta.url;
  const entry = here.endsWith('.ts') ? './dev-sink-worker-tsx.mjs' : './dev-sink-worker.js';
  return new Worker(new URL(entry, here), { workerData: { limits } });
}

export class RequestPreparer {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  constructor(private readonly limits: StreamLimits) {}

  /**
   * Checks and splits a request body on the worker. Answers come in the order of the calls. `body` is moved to the
   * worker (copied first when it shares its memory with other buffers), so the caller must not use it afterwards.
   */
  prepare(body: Uint8Array, compressed: boolean): Promise<PreparedRequest> {
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    const own =
      body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer ? body : new Uint8Array(body);
    return new Promise<PreparedRequest>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const ask: PrepareAsk = { id, body: own, compressed };
      worker.postMessage(ask, [own.buffer as ArrayBuffer]);
    });
  }

  /** Starts the worker now rather than at the first request (loading its modules takes a moment). */
  warmUp(): void {
    this.worker ??= this.start();
  }

  /** Stops the worker; requests still being prepared fail. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
    this.failAll(new AppError('INTERNAL', 'the dev sink is closing'));
  }

  private start(): Worker {
    const worker = startWorker(this.limits);
    // The HTTP server keeps the process alive while it serves; an idle worker should not.
    worker.unref();
    worker.on('message', (answer: PrepareAnswer) => this.settle(answer));
    const lost = (err: Error): void => {
      if (this.worker !== worker) return;
      // The next request starts a new worker.
      this.worker = undefined;
      void worker.terminate();
      this.failAll(err);
    };
    worker.on('error', (err) => lost(new AppError('INTERNAL', `the dev sink's request worker failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => lost(new AppError('INTERNAL', `the dev sink's request worker exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  private settle(answer: PrepareAnswer): void {
    const pending = this.pending.get(answer.id);
    if (!pending) return;
    this.pending.delete(answer.id);
    if ('prepared' in answer) pending.resolve(answer.prepared);
    else if ('refusal' in answer) {
      const { code, message, details } = answer.refusal;
      pending.reject(new AppError(code, message, { details }));
    } else pending.reject(new AppError('INTERNAL', `preparing a dev sink request failed: ${answer.failure}`));
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
