import { AppError, isAppError } from './errors.js';
import { preparedJson, type StreamLimits } from './batching.js';
import { EncodedRecords } from './encoded-records.js';
import type { Destination, SourceBytesRow } from './ports.js';
import type { RecordWriter } from './record.js';
import { ArrayPositionLog, type PositionLog } from './position-log.js';

export interface SenderOptions<P> {
  destination: Destination;
  target: string;
  limits: StreamLimits;
  envelopeBytes: number;
  /** Where delivery stands before the first record (exclusive), as the job last saved it. */
  start: P | null;
  /**
   * Called after each accepted request with the last delivered position, before the next request is sent, so a
   * retry resumes after it. Must be durable when it resolves.
   */
  onDelivered: (after: P | null, rows: number, latencyMs: number) => Promise<void>;
}

export interface SendSummary {
  rows: number;
  requests: number;
}

interface Failure<P> {
  /** Position just before the failed part: where a retry must resume to re-send it. */
  resumeAfter: P | null;
  error: AppError;
  keys: unknown[];
}

/**
 * Packs records into requests within the Stream API limits and sends them in order, tracking the last delivered
 * position. What cannot be sent (a row over the limits, a request the server calls too large even alone, a batch
 * with rejected rows) does not stop the rest: `finish` delivers everything else first, then fails with every reason
 * and moves the resume point back before the first failure, so a retry from the dead-letter queue re-sends it.
 */
export class RecordSender<P> {
  private readonly budget: number;
  private batch = new EncodedRecords();
  /** Bytes of the open batch as `BatchPacker` counts them: each record's UTF-8 length plus one comma. */
  private bytes = 0;
  private positions: PositionLog<P>;
  /** Requests filled and not sent yet, oldest first. */
  private readonly closed: Array<{ batch: EncodedRecords; positions: PositionLog<P> }> = [];
  private delivered: P | null;
  private readonly failures: Array<Failure<P>> = [];
  private rows = 0;
  private requests = 0;

  constructor(
    private readonly o: SenderOptions<P>,
    /** The key of a row for failure reports; `record` is the row's outgoing text when there is one. */
    private readonly describeKey: (position: P, record?: string) => unknown,
    /** Where a request's positions are kept (see PositionBytes). */
    private readonly newLog: () => PositionLog<P> = () => new ArrayPositionLog<P>(),
  ) {
    this.positions = newLog();
    this.budget = o.limits.maxBytes - o.envelopeBytes;
    this.delivered = o.start;
  }

  /** A record that cannot be sent at all (it failed its own checks); `record`: its text so far, to name its key. */
  reject(error: AppError, position: P, record?: string): void {
    this.failures.push({ resumeAfter: this.delivered, error, keys: [this.describeKey(position, record)] });
  }

  /**
   * Adds a record to the open request, sending that request first when the record would take it past `maxRows` or
   * the byte budget. The record is written as bytes at once (see EncodedRecords); its string can be dropped.
   */
  async add(record: string, position: P): Promise<void> {
    this.stage(position, record, undefined, null);
    await this.sendClosed();
  }

  /** As `add`, for a record `writer` stages from the row's JSON: it never exists as a string. */
  async write(writer: RecordWriter, rowJson: string, ordering: string | null, position: P, identity?: string): Promise<void> {
    this.stage(position, rowJson, writer, ordering, identity);
    await this.sendClosed();
  }

  /**
   * The row's JSON fitted to the per-record limits (`preparedJson`), or null once a row that cannot fit them without
   * being altered (ROW_TOO_LARGE) is recorded as rejected: the caller then skips it.
   */
  prepared(rowJson: string, mayNest: boolean, position: P): string | null {
    try {
      return preparedJson(rowJson, this.o.limits, mayNest);
    } catch (err) {
      if (!isAppError(err) || err.code !== 'ROW_TOO_LARGE') throw err;
      this.reject(err, position, rowJson);
      return null;
    }
  }

  /**
   * As `write` without sending: a request it fills waits, in order, for `sendClosed`. For a reader's row handler,
   * which cannot wait; the rows of one read bound what waits.
   */
  writeNow(writer: RecordWriter, rowJson: string, ordering: string | null, position: P): void {
    this.stage(position, rowJson, writer, ordering);
  }

  /** Sends the requests `writeNow` filled, in order. */
  async sendClosed(): Promise<void> {
    while (this.closed.length > 0) {
      const full = this.closed.shift()!;
      await this.send(full.batch, 0, full.batch.count, full.positions);
      full.batch.release();
      full.positions.release();
    }
  }

  /**
   * As `writeNow` for a row's JSON as UTF-8 bytes (see SourceBytesRow). A row that could be past the per-record
   * limits, by its size or its `brackets`, takes `prepared` on its text, which checks them exactly; so does one that
   * is not valid UTF-8, which then gets the U+FFFD replacements (and the event id) the text path gives it.
   */
  writeBytesNow(writer: RecordWriter, row: SourceBytesRow, mayNest: boolean, ordering: string | null, position: P): void {
    if (row.length > this.o.limits.maxFieldBytes || (mayNest && row.brackets > this.o.limits.maxDepth) || !row.utf8) {
      const json = this.prepared(row.json.toString('utf8', row.start, row.start + row.length), mayNest, position);
      if (json !== null) this.stage(position, json, writer, ordering);
      return;
    }
    this.stage(position, row, writer, ordering);
  }

  private stageRecord(text: string | SourceBytesRow, writer: RecordWriter | undefined, ordering: string | null, identity?: string): number {
    if (typeof text !== 'string') return writer!.bytes(this.batch, text.json, text.start, text.length, ordering);
    return writer ? writer(this.batch, text, ordering, identity) : this.batch.stage(text);
  }

  /**
   * Adds a record to the open request; one it would take past the limits closes that request first. `text` is the
   * record, or with a `writer` the row's JSON, as text or as bytes.
   */
  private stage(position: P, text: string | SourceBytesRow, writer: RecordWriter | undefined, ordering: string | null, identity?: string): void {
    let written = this.stageRecord(text, writer, ordering, identity);
    const size = written + 1;
    if (size > this.budget) {
      this.reject(new AppError('ROW_TOO_LARGE', `record of ${size} bytes cannot fit in one request`), position, this.batch.stagedText(written));
      return;
    }
    if (this.batch.count >= this.o.limits.maxRows || this.bytes + size > this.budget) {
      this.closed.push({ batch: this.batch, positions: this.positions });
      this.batch = new EncodedRecords();
      this.positions = this.newLog();
      this.bytes = 0;
      written = this.stageRecord(text, writer, ordering, identity);
    }
    this.batch.commit(written);
    this.bytes += size;
    this.positions.push(position);
  }

  /** Sends records `from` to `to` (exclusive) of `batch`, whose positions are `positions` (one per record). */
  private async send(batch: EncodedRecords, from: number, to: number, positions: PositionLog<P>): Promise<void> {
    const startAfter = this.delivered;
    const count = to - from;
    try {
      const { destination, target } = this.o;
      const result = destination.sendEncoded
        ? await destination.sendEncoded(target, batch, from, to)
        : await destination.send(target, batch.texts(from, to));
      this.rows += result.rows;
      this.requests += 1;
      this.delivered = positions.at(to - 1);
      if (this.failures.length === 0) await this.o.onDelivered(this.delivered, result.rows, result.latencyMs);
    } catch (err) {
      if (!isAppError(err)) throw err;
      if (err.code === 'DEST_TOO_LARGE' && count > 1) {
        const half = Math.ceil(count / 2);
        await this.send(batch, from, from + half, positions);
        await this.send(batch, from + half, to, positions);
        return;
      }
      if (err.code === 'DEST_TOO_LARGE' || err.code === 'DEST_ROWS_REJECTED') {
        const named = Math.min(count, 20);
        const keys: unknown[] = [];
        for (let i = from; i < from + named; i++) keys.push(this.describeKey(positions.at(i), batch.text(i)));
        this.failures.push({ resumeAfter: startAfter, error: err, keys });
        this.delivered = positions.at(to - 1);
        return;
      }
      throw err;
    }
  }

  async finish(): Promise<SendSummary> {
    await this.sendClosed();
    const batch = this.batch;
    this.bytes = 0;
    if (batch.count > 0) await this.send(batch, 0, batch.count, this.positions);
    batch.release();
    this.positions.release();
    this.positions = this.newLog();
    if (this.failures.length === 0) return { rows: this.rows, requests: this.requests };
    const first = this.failures[0]!;
    await this.o.onDelivered(first.resumeAfter, 0, 0);
    const codes = [...new Set(this.failures.map((f) => f.error.code))];
    throw new AppError(
      codes.length === 1 ? codes[0]! : 'DEST_REJECTED',
      `${this.failures.length} part(s) were not delivered (${this.rows} rows were): ${this.failures
        .slice(0, 5)
        .map((f) => `${f.error.message} [keys ${JSON.stringify(f.keys.slice(0, 3))}]`)
        .join('; ')}`,
      {
        details: {
          delivered: this.rows,
          rejectedRows: this.failures.reduce((n, f) => n + Number(f.error.details?.rejectedRows ?? f.keys.length), 0),
          failures: this.failures.slice(0, 20).map((f) => ({ code: f.error.code, message: f.error.message, keys: f.keys, server: f.error.details })),
        },
      },
    );
  }
}
