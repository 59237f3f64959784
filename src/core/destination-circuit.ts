import { AppError, isAppError } from './errors.js';
import type { EncodedRecords } from './encoded-records.js';
import type { Destination, SendResult } from './ports.js';

/** Retryable failures in a row, with no success between them, after which the destination counts as down. */
export const FAILURES_TO_OPEN = 3;

export interface CircuitOptions {
  /** While the destination is down, at most one push attempt per this many ms reads and sends (a probe). */
  probeEveryMs: number;
  now?: () => number;
}

/** What `admit` lets a push attempt do; `done` must be called when the attempt ends, however it ends. */
export interface Admission {
  done(): void;
}

/**
 * A destination that remembers it is down. Without it, every push job's retry during an outage read its rows from
 * the source, encoded them and sent them to be refused: on a backfill with the destination down, 22 CPU-seconds per
 * 1M rows and a customer database read over and over for nothing. After `FAILURES_TO_OPEN` retryable failures in a
 * row, `admit` lets one attempt at a time through, at most one per `probeEveryMs`, and refuses the others before
 * they read anything (a retryable DEST_UNAVAILABLE: the job keeps its backoff; its last attempt always tries); the
 * first request accepted lets everything through again.
 */
export class CircuitDestination implements Destination {
  private failures = 0;
  private downSince: number | null = null;
  private probing = false;
  private lastProbe = 0;
  private readonly now: () => number;
  readonly sendEncoded?: (target: string, records: EncodedRecords, from: number, to: number) => Promise<SendResult>;

  constructor(
    private readonly inner: Destination,
    private readonly options: CircuitOptions,
  ) {
    this.now = options.now ?? Date.now;
    const encoded = inner.sendEncoded?.bind(inner);
    if (encoded) this.sendEncoded = (target, records, from, to) => this.observed(encoded(target, records, from, to));
  }

  /** Whether the destination counts as down (for status and tests). */
  get isDown(): boolean {
    return this.downSince !== null;
  }

  /**
   * Lets a push attempt read and send, or refuses it with a retryable error while the destination is down and
   * another attempt probes it (or one did less than `probeEveryMs` ago). A job's last attempt (`last`) is never
   * refused: the circuit can make a job try less often, never end in the dead-letter queue without having tried.
   */
  admit(last = false): Admission {
    if (this.downSince === null || last) return { done: () => {} };
    const now = this.now();
    if (this.probing || now - this.lastProbe < this.options.probeEveryMs) {
      throw new AppError(
        'DEST_UNAVAILABLE',
        `not attempted: the destination failed the last ${this.failures} requests (down since ${new Date(this.downSince).toISOString()}); ` +
          'one attempt at a time tries it again, and this job retries with its backoff',
        { retryable: true },
      );
    }
    this.probing = true;
    this.lastProbe = now;
    let open = true;
    return {
      done: () => {
        if (!open) return;
        open = false;
        this.probing = false;
      },
    };
  }

  send(target: string, records: readonly string[]): Promise<SendResult> {
    return this.observed(this.inner.send(target, records));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async observed(sending: Promise<SendResult>): Promise<SendResult> {
    try {
      const result = await sending;
      this.failures = 0;
      this.downSince = null;
      return result;
    } catch (err) {
      // Refusals of what was sent (too large, rejected rows, a bad key) say the destination is up.
      if (isAppError(err) && err.retryable) {
        this.failures += 1;
        if (this.failures >= FAILURES_TO_OPEN && this.downSince === null) this.downSince = this.now();
      } else {
        this.failures = 0;
        this.downSince = null;
      }
      throw err;
    }
  }
}
