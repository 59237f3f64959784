import { isUtf8 } from 'node:buffer';
import { gunzipSync } from 'node:zlib';
import type { StreamLimits } from '../core/batching.js';
import { AppError } from '../core/errors.js';
import { jsonDepth, objectMembers, shallowerThanBrackets } from '../core/json-scan.js';
import { fieldProblem, invalidUtf8Offset, parseTarget, tableNameProblem } from './dev-sink-input.js';
import { scanEnvelope, type EnvelopeScan } from './dev-sink-envelope.js';
import { skipJsonSpace } from './dev-sink-json.js';
import { splitRows, type Batch, type MemberSource } from './dev-sink-rows.js';

/**
 * Everything the dev sink checks and works out from a request's body before its rows reach DuckDB: unpacking,
 * UTF-8, JSON, the envelope, the per-row limits and the split into value spans. A pure function of the bytes, so
 * that it can run on another thread than the one appending (see dev-sink-worker.ts).
 */

/**
 * A refused request: `reason` is the stable code clients see in `errors[]`, `where` adds facts to that entry (the
 * row and field, or the byte offset, at fault).
 */
export function refuse(status: number, reason: string, message: string, where: Record<string, unknown> = {}): AppError {
  const code = status === 401 ? 'DEST_AUTH' : status === 413 ? 'DEST_TOO_LARGE' : 'DEST_REJECTED';
  return new AppError(code, message, { details: { status, reason, where } });
}

export interface RowError {
  row: number;
  code: string;
  message: string;
}

/** The body as text; invalid UTF-8 is refused, never stored as U+FFFD. */
function decodeUtf8(bytes: Uint8Array, compressed: boolean): string {
  if (isUtf8(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const offset = invalidUtf8Offset(bytes);
  const of = compressed ? ' of the uncompressed body' : '';
  const hex = bytes[offset]!.toString(16).padStart(2, '0');
  throw refuse(400, 'INVALID_UTF8', `body is not valid UTF-8: byte 0x${hex} at offset ${offset}${of} starts no valid sequence`, { offset });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Envelope {
  table: string;
  mode: 'append' | 'merge';
  primaryKey: string | undefined;
  wait: boolean;
  /** The raw text of each row, sliced from the body. */
  rowTexts: string[];
  /** Where each row starts in the body. */
  rowStarts: number[];
  /** Where the rows' members are. */
  scan: EnvelopeScan;
}

function parseEnvelope(text: string, limits: StreamLimits): Envelope {
  // Checked without building the rows as objects; JSON.parse runs only to say what is wrong.
  const scan = scanEnvelope(text);
  if (scan === undefined) {
    try {
      JSON.parse(text);
    } catch (err) {
      throw refuse(400, 'MALFORMED_JSON', `body is not valid JSON: ${(err as Error).message}`);
    }
    throw new Error('the envelope scanner refused a body that JSON.parse accepts');
  }
  if (text.charCodeAt(skipJsonSpace(text, 0)) !== 0x7b) throw refuse(400, 'INVALID_REQUEST', 'body must be a JSON object with data and config');
  const parts = {
    config: scan.configStart === -1 ? undefined : text.slice(scan.configStart, scan.configEnd),
    data: scan.dataStart === -1 ? undefined : text.slice(scan.dataStart, scan.dataEnd),
    rows: scan.rowStarts.map((start, r) => text.slice(start, scan.rowEnds[r])),
    rowStarts: scan.rowStarts,
  };
  const config: unknown = parts.config === undefined ? undefined : JSON.parse(parts.config);
  if (!isObject(config)) throw refuse(400, 'INVALID_REQUEST', 'config is required and must be an object');
  const table = config.table;
  if (typeof table !== 'string' || table === '') throw refuse(400, 'INVALID_TABLE', 'config.table is required ("schema.table")');
  const nameProblem = tableNameProblem(table);
  if (nameProblem) throw refuse(400, 'INVALID_TABLE', nameProblem);
  try {
    parseTarget(table);
  } catch (err) {
    throw refuse(400, 'INVALID_TABLE', `config.table: ${(err as Error).message}`);
  }
  const mode = config.mode ?? 'append';
  if (mode !== 'append' && mode !== 'merge') throw refuse(400, 'INVALID_MODE', 'config.mode must be "append" or "merge"');
  if (config.wait !== undefined && typeof config.wait !== 'boolean') throw refuse(400, 'INVALID_REQUEST', 'config.wait must be a boolean');
  let primaryKey: string | undefined;
  if (mode === 'merge') {
    const pk = Array.isArray(config.primary_key) && config.primary_key.length === 1 ? config.primary_key[0] : config.primary_key;
    if (typeof pk !== 'string' || pk === '') {
      throw refuse(400, 'INVALID_PRIMARY_KEY', 'merge needs config.primary_key: exactly one column name (composite keys are not supported)');
    }
    primaryKey = pk;
  }
  if (parts.data === undefined) throw refuse(400, 'INVALID_REQUEST', 'data is required: an object or an array of objects');
  const first = parts.data.charCodeAt(0);
  if (first !== 0x7b && first !== 0x5b) throw refuse(400, 'INVALID_REQUEST', 'data must be an object or an array of objects');
  const rows = parts.rows;
  // 413 rather than 400: the client's reaction to a too-large request (split it) is the right one here too.
  if (rows.length > limits.maxRows) throw refuse(413, 'TOO_MANY_ROWS', `${rows.length} rows exceed the ${limits.maxRows}-row limit`);
  return { table, mode, primaryKey, wait: config.wait === true, rowTexts: rows, rowStarts: parts.rowStarts, scan };
}

/** Why a row breaks the per-record limits, or undefined when it fits. */
function rowProblem(text: string, limits: StreamLimits): Omit<RowError, 'row'> | undefined {
  if (text.charCodeAt(0) !== 0x7b) return { code: 'NOT_AN_OBJECT', message: 'row is not a JSON object' };
  // Counting brackets settles most rows; the exact depth scan runs only for rows with more brackets than the limit.
  const depth = shallowerThanBrackets(text, limits.maxDepth) ? undefined : jsonDepth(text);
  if (depth !== undefined && depth > limits.maxDepth) {
    return { code: 'TOO_DEEP', message: `row is nested ${depth} levels deep (the row counting as 1), over the limit of ${limits.maxDepth}` };
  }
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: below that bound no field can be over the limit.
  if (text.length * 3 > limits.maxFieldBytes) {
    for (const m of objectMembers(text)) {
      const bytes = Buffer.byteLength(text.slice(m.valueStart, m.valueEnd));
      if (bytes > limits.maxFieldBytes) {
        return { code: 'FIELD_TOO_LARGE', message: `field ${m.rawKey} is ${bytes} bytes, over the ${limits.maxFieldBytes}-byte limit` };
      }
    }
  }
  return undefined;
}

/**
 * Merge requests: every row needs the key (else that row is rejected), and a key twice in one request fails the
 * whole request, as the API documents. Keys are compared by their raw text so that big integers differing only
 * beyond 2^53 stay distinct.
 */
function checkMergeKeys(envelope: Envelope, rejected: Map<number, RowError>): void {
  const pk = envelope.primaryKey!;
  const seen = new Map<string, number>();
  envelope.rowTexts.forEach((text, row) => {
    if (text.charCodeAt(0) !== 0x7b) return;
    const parsed = JSON.parse(text) as Record<string, unknown>;
    if (parsed[pk] === null || parsed[pk] === undefined) {
      if (!rejected.has(row)) rejected.set(row, { row, code: 'PRIMARY_KEY_MISSING', message: `primary key ${pk} is missing or null` });
      return;
    }
    const m = objectMembers(text)
      .filter((x) => JSON.parse(x.rawKey) === pk)
      .pop()!;
    const raw = text.slice(m.valueStart, m.valueEnd);
    const identity = raw.startsWith('"') ? `s${JSON.parse(raw) as string}` : `v${raw}`;
    const first = seen.get(identity);
    if (first !== undefined) {
      throw refuse(400, 'DUPLICATE_PRIMARY_KEY', `primary key ${pk} = ${raw.slice(0, 200)} appears in rows ${first} and ${row}`);
    }
    seen.set(identity, row);
  });
}

/** A request ready to be stored: what the envelope asked for, the rows rejected, and the others split. */
export interface PreparedRequest {
  table: string;
  wait: boolean;
  warnings: string[];
  /** Every rejected row, by index in `data`. */
  errors: RowError[];
  /** The accepted rows, in `data` order. */
  batch: Batch;
}

/** Unpacks `body` (gzip when `compressed`) up to `limits.maxBytes`. */
function unpack(body: Uint8Array, compressed: boolean, maxBytes: number): Uint8Array {
  if (!compressed) return body;
  try {
    return gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw refuse(413, 'BODY_TOO_LARGE', `request body exceeds ${maxBytes} bytes uncompressed`);
    }
    throw refuse(400, 'BAD_GZIP', `body is not valid gzip: ${(err as Error).message}`);
  }
}

/** Checks a request's body and splits its rows; a request that cannot be stored at all throws its refusal. */
export function prepareRequest(body: Uint8Array, compressed: boolean, limits: StreamLimits): PreparedRequest {
  const text = decodeUtf8(unpack(body, compressed, limits.maxBytes), compressed);
  const envelope = parseEnvelope(text, limits);
  envelope.rowTexts.forEach((rowText, row) => {
    // A valid UTF-8 body carries a NUL or a lone surrogate only as a \u escape: other rows need no parse.
    const problem = fieldProblem(rowText.includes('\\u') ? JSON.parse(rowText) : undefined, rowText, row);
    if (problem) throw refuse(400, problem.code, problem.message, { row: problem.row, field: problem.field });
  });

  const rejected = new Map<number, RowError>();
  envelope.rowTexts.forEach((rowText, row) => {
    const problem = rowProblem(rowText, limits);
    if (problem) rejected.set(row, { row, ...problem });
  });
  const warnings: string[] = [];
  if (envelope.mode === 'merge') {
    checkMergeKeys(envelope, rejected);
    // DuckLake has no unique keys either; the dev sink keeps every version and leaves "latest per key" to views.
    warnings.push('the dev sink stores merge requests as appends: every version of a key is kept');
  }

  const valid: number[] = [];
  envelope.rowStarts.forEach((_, row) => {
    if (!rejected.has(row)) valid.push(row);
  });
  // The members the scan found, by the row's index in `valid`.
  const { members, memberEnds } = envelope.scan;
  const scanned: MemberSource = (_text, index, _open, member) => {
    const row = valid[index]!;
    for (let m = row === 0 ? 0 : memberEnds[row - 1]!; m < memberEnds[row]!; m += 1) {
      if (!member(members[4 * m]!, members[4 * m + 1]!, members[4 * m + 2]!, members[4 * m + 3]!)) return -1;
    }
    return 0;
  };
  const batch = splitRows(
    text,
    valid.map((row) => envelope.rowStarts[row]!),
    scanned,
  );
  for (const r of batch.rejected) rejected.set(valid[r.index]!, { row: valid[r.index]!, code: r.code, message: r.message });
  const errors = [...rejected.values()].sort((a, b) => a.row - b.row);
  return { table: envelope.table, wait: envelope.wait, warnings, errors, batch };
}
