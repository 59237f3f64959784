import type { Position } from './cursor.js';
import { grownBuffer } from './encoded-records.js';

/**
 * The positions of one request's records, in record order: the sender needs the last one once the request is
 * accepted, and any one when it splits a request or names failed rows.
 */
export interface PositionLog<P> {
  readonly length: number;
  push(position: P): void;
  at(index: number): P;
  /** Called when the log's request is done with; the log must not be used afterwards. */
  release(): void;
}

/** Positions as they are: for positions that cost nothing to keep (indexes, ids of buffered entries). */
export class ArrayPositionLog<P> implements PositionLog<P> {
  private readonly items: P[] = [];

  get length(): number {
    return this.items.length;
  }

  push(position: P): void {
    this.items.push(position);
  }

  at(index: number): P {
    return this.items[index]!;
  }

  release(): void {
    this.items.length = 0;
  }
}

/** Buffers of released logs, reused by the next ones. */
const spare: Buffer[] = [];
/** As many as EncodedRecords keeps, for the same requests. */
const MAX_SPARE = 8;
const NULL_TEXT = 0xffffffff;
const FIRST_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);
/** With the `u` flag a surrogate pair is one code point: this matches only a surrogate without its other half. */
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Key-range positions kept as their UTF-8 bytes in one buffer outside the JavaScript heap. Held as objects, a
 * request's thousands of positions (each an object, an array and two or more strings) lived as long as the request
 * and were promoted to the old generation: on a backfill they were most of what the garbage collector promoted,
 * and what made the heap grow. Each text is stored with its byte length, so any text round-trips exactly.
 */
export class PositionBytes implements PositionLog<Position> {
  private readonly starts: number[] = [];
  private end = 0;
  /** Positions with a text UTF-8 cannot carry (a lone surrogate), kept as they are. */
  private readonly odd = new Map<number, Position>();

  /**
   * No buffer until the first position: a sender makes the log of its next request as soon as it closes one, and
   * the last such log is never used. Taking a spare buffer there would drop it with the sender, so every request
   * would allocate (and soon discard, in the old generation) a buffer of its own.
   */
  private buf: Buffer = EMPTY;

  get length(): number {
    return this.starts.length;
  }

  push(position: Position): void {
    const { wm, pk } = position;
    let odd = wm !== null && LONE_SURROGATE.test(wm);
    let room = 8 + (wm === null ? 0 : wm.length * 3);
    for (let i = 0; i < pk.length; i++) {
      const v = pk[i]!;
      odd ||= LONE_SURROGATE.test(v);
      room += 4 + v.length * 3;
    }
    if (odd) {
      this.odd.set(this.starts.length, position);
      this.starts.push(this.end);
      return;
    }
    this.reserve(this.end + room);
    this.starts.push(this.end);
    let at = this.writeText(wm, this.end);
    this.writeCount(pk.length, at);
    at += 4;
    for (let i = 0; i < pk.length; i++) at = this.writeText(pk[i]!, at);
    this.end = at;
  }

  at(index: number): Position {
    const odd = this.odd.get(index);
    if (odd) return odd;
    let at = this.starts[index]!;
    const wm = this.readText(at);
    at = wm.next;
    const count = this.buf.readUInt32LE(at);
    at += 4;
    const pk: string[] = [];
    for (let i = 0; i < count; i++) {
      const v = this.readText(at);
      pk.push(v.text!);
      at = v.next;
    }
    return { wm: wm.text, pk };
  }

  release(): void {
    if (this.buf.length > 0 && spare.length < MAX_SPARE && this.buf.length <= 4 * 1024 * 1024) spare.push(this.buf);
    this.buf = EMPTY;
    this.starts.length = 0;
    this.odd.clear();
    this.end = 0;
  }

  /** A little-endian uint32 written byte by byte: `writeUInt32LE` checks its arguments on every call. */
  private writeCount(n: number, at: number): void {
    const b = this.buf;
    b[at] = n & 0xff;
    b[at + 1] = (n >>> 8) & 0xff;
    b[at + 2] = (n >>> 16) & 0xff;
    b[at + 3] = n >>> 24;
  }

  private writeText(text: string | null, at: number): number {
    if (text === null) {
      this.writeCount(NULL_TEXT, at);
      return at + 4;
    }
    // Buffer's own UTF-8 writer (what `write` calls once it has sorted out its arguments): this runs per row.
    const bytes = (this.buf as Buffer & { utf8Write(t: string, o: number, l: number): number }).utf8Write(text, at + 4, this.buf.length - at - 4);
    this.writeCount(bytes, at);
    return at + 4 + bytes;
  }

  private readText(at: number): { text: string | null; next: number } {
    const bytes = this.buf.readUInt32LE(at);
    if (bytes === NULL_TEXT) return { text: null, next: at + 4 };
    return { text: this.buf.toString('utf8', at + 4, at + 4 + bytes), next: at + 4 + bytes };
  }

  private reserve(size: number): void {
    if (this.buf.length === 0) this.buf = spare.pop() ?? Buffer.allocUnsafe(FIRST_BYTES);
    this.buf = grownBuffer(this.buf, this.end, size);
  }
}
