import type ZongJi from '@vlasky/zongji';
import { AppError } from '../core/errors.js';

/**
 * How the binlog reader tells a quiet binlog from a dead connection. A connection that stops answering without a
 * reset (a partition, a dead NAT entry, a hung server) delivers nothing and fails nothing, and an idle binlog
 * delivers nothing either: without heartbeats the two look the same, and the reader would wait for events forever
 * while its lease is renewed. So the server is asked for a heartbeat event at half of `cdc.receiveTimeout` on an
 * idle binlog, and a stream that receives nothing for the whole of it is taken for dead.
 */

/**
 * The statement that makes the server send a heartbeat event after `periodMs` without events. The server reads a
 * user variable of the dump connection (nanoseconds) when COM_BINLOG_DUMP starts, as a replica sets it for CHANGE
 * MASTER ... MASTER_HEARTBEAT_PERIOD: `@master_heartbeat_period` (MariaDB, MySQL), `@source_heartbeat_period`
 * (its newer name in MySQL). Both are set: a user variable the server does not read does nothing.
 */
export function heartbeatPeriodSql(periodMs: number): string {
  const ns = BigInt(Math.max(1, Math.round(periodMs))) * 1_000_000n;
  return `SET @master_heartbeat_period = ${ns}, @source_heartbeat_period = ${ns}`;
}

/**
 * Starts the decoder with heartbeats every `periodMs` (0: none). Pinned @vlasky/zongji 0.9.0: `start` opens the
 * binlog connection (`zongji.connection`) synchronously and queues COM_BINLOG_DUMP on it only after its queries on
 * the control connection have answered; a connection runs its commands in order, so a statement queued on it right
 * after `start` runs before the dump. Its failure fails the start (`error`).
 */
export function startWithHeartbeats(zongji: ZongJi, options: Parameters<ZongJi['start']>[0], periodMs: number): void {
  zongji.start(options);
  if (periodMs <= 0) return;
  const connection = zongji.connection;
  if (!connection) throw new AppError('INTERNAL', 'the binlog decoder opened no binlog connection at start (is @vlasky/zongji still 0.9.0?)');
  connection.query(heartbeatPeriodSql(periodMs), (err) => {
    if (err) zongji.emit('error', err);
  });
}

/** The socket under the binlog connection (mysql2's `stream`, replaced by a TLS socket when TLS starts). */
interface Socket {
  bytesRead: number;
  isPaused(): boolean;
}

/**
 * Calls `silent` once when the binlog connection receives nothing for `limitMs` (0: never). Received means any
 * byte on its socket: events of tables the decoder filters out (a large transaction of another table) arrive
 * without a `binlog` event, and still show the connection alive. While the reader holds the connection paused (it
 * reads a table's columns before decoding on), the server is not the one silent, so the time does not count.
 * `heard` marks a decoded event, for a socket this cannot look at.
 */
export function watchBinlogSilence(zongji: ZongJi, limitMs: number, silent: (ms: number) => void): { heard: () => void; end: () => void } {
  if (limitMs <= 0) return { heard: () => undefined, end: () => undefined };
  const socket = (): Socket | undefined => (zongji.connection as unknown as { stream?: Socket } | null)?.stream;
  let last = Date.now();
  let bytes = socket()?.bytesRead ?? 0;
  const timer = setInterval(
    () => {
      const s = socket();
      const now = Date.now();
      if (s && (s.bytesRead !== bytes || s.isPaused())) {
        bytes = s.bytesRead;
        last = now;
      } else if (now - last >= limitMs) {
        clearInterval(timer);
        silent(now - last);
      }
    },
    Math.max(10, Math.min(1000, limitMs / 10)),
  );
  timer.unref();
  return {
    heard: () => {
      last = Date.now();
    },
    end: () => clearInterval(timer),
  };
}
