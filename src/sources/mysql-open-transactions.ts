import { AppError } from '../core/errors.js';

/**
 * What `SHOW ENGINE INNODB STATUS` says of the transactions open when it was printed: the print time and the age of
 * the oldest active one. The late-commit read boundary is built on it, not on information_schema.INNODB_TRX: that
 * table is served from a cache refreshed only when nobody read it for 100 ms, so under polling more frequent than
 * that (several tables, several workers, a monitoring agent) a transaction opened since the last refresh is missing
 * from it, for as long as the polling lasts. The monitor output is made anew for each call.
 */
export interface OpenTransactions {
  /** When the server printed the output: `YYYY-MM-DD HH:MM:SS` in its system time zone, whole seconds. */
  printedAt: string;
  /** Whole seconds the oldest active transaction had been open at `printedAt`; null when none was active. */
  oldestActiveSeconds: number | null;
}

/** The print time, then the printing thread's id: 0x… on MariaDB and MySQL 5.7, decimal on MySQL 8.0 (Linux). */
const HEADER = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:(?:0x[0-9a-f]+|\d+) )?INNODB MONITOR OUTPUT$/m;
const ACTIVE = /^---TRANSACTION [^,\n]+, ACTIVE (?:\(PREPARED\) )?(\d+) sec/gm;
/** What the server puts in place of the transactions it left out of an output longer than its limit (1 MB). */
const TRUNCATED = '... truncated...';
const SECTION = '\nTRANSACTIONS\n------------\n';
/** The output's last lines: only there, as a query printed in the list may hold the same words. */
const END = /\nEND OF INNODB MONITOR OUTPUT\n=+\s*$/;

/**
 * Reads the print time and the oldest active transaction's age out of the monitor output. Refuses an output it
 * cannot read whole (no print time, no transaction section, a truncated list): a boundary built on part of the list
 * could pass over an open transaction's rows.
 */
export function openTransactions(status: string, where: string): OpenTransactions {
  const header = HEADER.exec(status);
  const complete = header !== null && status.includes(SECTION) && END.test(status) && !status.includes(TRUNCATED);
  if (!complete) {
    throw new AppError(
      'SOURCE_UNAVAILABLE',
      `${where}: SHOW ENGINE INNODB STATUS gave no complete list of open transactions` +
        (status.includes(TRUNCATED) ? ' (the server truncated it: too many open transactions)' : '') +
        `, so the late-commit read boundary cannot be placed; this run reads nothing and is tried again`,
      { retryable: true },
    );
  }
  let oldest: number | null = null;
  for (const m of status.matchAll(ACTIVE)) {
    const seconds = Number(m[1]);
    if (oldest === null || seconds > oldest) oldest = seconds;
  }
  return { printedAt: header[1]!, oldestActiveSeconds: oldest };
}

/**
 * How many whole seconds before the print time the boundary must lie, or null when no transaction was active (the
 * boundary is then the time just before the output was asked for). `ACTIVE n sec` is whole seconds: on MariaDB the
 * print time's second minus the start's, so the print time less n is at or below the start; on MySQL 8.0 the whole
 * seconds of the exact age (std::chrono), so the print time less n can lie up to a second above the start. One second
 * covers that rounding, and one more a statement's `NOW()`, which is what its rows carry and is taken when the
 * statement begins, a little before its transaction is registered.
 */
export function secondsBeforePrint(open: OpenTransactions): number | null {
  return open.oldestActiveSeconds === null ? null : open.oldestActiveSeconds + 2;
}
