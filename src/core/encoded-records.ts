/**
 * Records of one request as the UTF-8 bytes that go on the wire, written once as they are added: comma-separated in
 * one growing buffer, with the offset where each starts. A batch of thousands of records then holds one buffer
 * outside the JavaScript heap instead of thousands of strings that live until the request is answered (and that the
 * garbage collector copies and promotes meanwhile), and the body is that buffer between the envelope's head and
 * tail, with no second pass over the records.
 */
/** Buffers of finished batches, reused by the next ones: a backfill's batches are alike in size. */
const spare: Buffer[] = [];
/** At most this many spare buffers are kept: one per push job of the default `destination.concurrency` (8). */
const MAX_SPARE = 8;
/** Bytes kept free before the first record, where `body` writes the envelope's head in place. */
const HEAD_ROOM = 16;

export class EncodedRecords {
  private buf: Buffer;
  /** Byte offset where each record starts; records are separated by one comma. */
  private readonly starts: number[] = [];
  private end = HEAD_ROOM;

  constructor(capacity = 64 * 1024) {
    this.buf = spare.pop() ?? Buffer.allocUnsafe(capacity);
  }

  /**
   * Gives the buffer back for the next batch once nothing reads these records any more (their request was answered,
   * or copied into a body that no longer needs them). The records must not be used afterwards.
   */
  release(): void {
    if (this.buf.length > 0 && spare.length < MAX_SPARE && this.buf.length <= 16 * 1024 * 1024) spare.push(this.buf);
    this.buf = Buffer.alloc(0);
    this.starts.length = 0;
    this.end = HEAD_ROOM;
  }

  get count(): number {
    return this.starts.length;
  }

  /** Bytes of the records and the commas between them. */
  get byteLength(): number {
    return this.end - HEAD_ROOM;
  }

  /**
   * Writes `record` after the others (not counted yet) and returns its UTF-8 length. `commit` keeps it; anything
   * else written later overwrites it.
   */
  stage(record: string): number {
    // At most three bytes per UTF-16 unit. `open` may replace the buffer: it is read after.
    const at = this.open(record.length * 3);
    return this.buf.write(record, at);
  }

  /**
   * Opens the next record for writing in place (not counted yet): reserves `maxBytes` bytes at the offset it returns,
   * in `buffer`. `commit` with the bytes written keeps it, as after `stage`.
   */
  open(maxBytes: number): number {
    const at = this.starts.length === 0 ? HEAD_ROOM : this.end + 1;
    this.reserve(at + maxBytes);
    if (this.starts.length > 0) this.buf[this.end] = 0x2c;
    return at;
  }

  /** The buffer `open` reserved room in; valid until the next `open` or `stage`, which may grow it. */
  get buffer(): Buffer {
    return this.buf;
  }

  /** The text of the record staged but not committed, of `bytes` bytes (to name a record that cannot be kept). */
  stagedText(bytes: number): string {
    const at = this.starts.length === 0 ? HEAD_ROOM : this.end + 1;
    return this.buf.toString('utf8', at, at + bytes);
  }

  /** Keeps the record `stage` just wrote, of `bytes` bytes. */
  commit(bytes: number): void {
    const at = this.starts.length === 0 ? HEAD_ROOM : this.end + 1;
    this.starts.push(at);
    this.end = at + bytes;
  }

  /** The comma-separated bytes of records `from` (inclusive) to `to` (exclusive), without copying. */
  bytes(from = 0, to = this.starts.length): Buffer {
    if (from >= to) return Buffer.alloc(0);
    return this.buf.subarray(this.starts[from]!, to < this.starts.length ? this.starts[to]! - 1 : this.end);
  }

  /**
   * Every record between `head` and `tail`, written around them in place: the request body without copying the
   * records. `head` must fit in 16 bytes. Later calls of `bytes` and `text` still see only the records.
   */
  body(head: string, tail: string): Buffer {
    const headBytes = Buffer.byteLength(head);
    if (headBytes > HEAD_ROOM) return Buffer.concat([Buffer.from(head), this.bytes(), Buffer.from(tail)]);
    this.reserve(this.end + tail.length * 3);
    const tailBytes = this.buf.write(tail, this.end);
    this.buf.write(head, HEAD_ROOM - headBytes);
    return this.buf.subarray(HEAD_ROOM - headBytes, this.end + tailBytes);
  }

  /** One record's text (for failure reports and destinations that take strings). */
  text(i: number): string {
    const stop = i + 1 < this.starts.length ? this.starts[i + 1]! - 1 : this.end;
    return this.buf.toString('utf8', this.starts[i]!, stop);
  }

  texts(from = 0, to = this.starts.length): string[] {
    const out: string[] = [];
    for (let i = from; i < to; i++) out.push(this.text(i));
    return out;
  }

  private reserve(size: number): void {
    this.buf = grownBuffer(this.buf, this.end, size);
  }
}

/**
 * `buf` when it holds `size` bytes, else a buffer four times larger (as often as needed) with its first `used` bytes:
 * batches grow in few steps and then stay that size for the rest of a backfill.
 */
export function grownBuffer(buf: Buffer, used: number, size: number): Buffer {
  if (size <= buf.length) return buf;
  let capacity = Math.max(buf.length, 1024) * 4;
  while (capacity < size) capacity *= 4;
  const grown = Buffer.allocUnsafe(capacity);
  buf.copy(grown, 0, 0, used);
  return grown;
}
