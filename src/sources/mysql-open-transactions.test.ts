import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import { openTransactions, secondsBeforePrint } from './mysql-open-transactions.js';

/** The parts of `SHOW ENGINE INNODB STATUS` that matter, as MariaDB 10.11 prints them. */
function monitor(transactions: string, options: { header?: string; truncated?: boolean } = {}): string {
  return [
    '',
    '=====================================',
    options.header ?? '2026-12-02 03:33:07 0x7fbc103ce6c0 INNODB MONITOR OUTPUT',
    '=====================================',
    'Per second averages calculated from the last 20 seconds',
    '------------',
    'TRANSACTIONS',
    '------------',
    'Trx id counter 8566',
    'History list length 0',
    'LIST OF TRANSACTIONS FOR EACH SESSION:',
    ...(options.truncated ? ['... truncated...'] : []),
    transactions,
    '--------',
    'FILE I/O',
    '--------',
    '----------------------------',
    'END OF INNODB MONITOR OUTPUT',
    '============================',
    '',
  ].join('\n');
}

const ACTIVE = `---TRANSACTION (0x7fbc121a7680), ACTIVE 2 sec
0 lock struct(s), heap size 1128, 0 row lock(s)
MariaDB thread id 216, OS thread handle 140445701469888, query id 24566 127.0.0.1 root
---TRANSACTION 8565, ACTIVE 17 sec inserting
1 lock struct(s), heap size 1128, 0 row lock(s), undo log entries 1
MySQL thread id 215, OS thread handle 140445702084288, query id 24564 127.0.0.1 root update
---TRANSACTION 8570, ACTIVE (PREPARED) 31 sec
---TRANSACTION 421, not started
0 lock struct(s), heap size 1128, 0 row lock(s)`;

describe('openTransactions', () => {
  it('reads the print time and the oldest active transaction, prepared ones included, not-started ones left out', () => {
    const open = openTransactions(monitor(ACTIVE), 'app.t');
    expect(open).toEqual({ printedAt: '2026-12-02 03:33:07', oldestActiveSeconds: 31 });
    expect(secondsBeforePrint(open)).toBe(33);
  });

  it('says none is active when the list holds none (or only sessions that have not started one)', () => {
    const open = openTransactions(monitor('---TRANSACTION 421, not started'), 'app.t');
    expect(open).toEqual({ printedAt: '2026-12-02 03:33:07', oldestActiveSeconds: null });
    expect(secondsBeforePrint(open)).toBeNull();
    // MySQL prints the header without the thread handle.
    expect(openTransactions(monitor('', { header: '2026-12-02 03:33:07 INNODB MONITOR OUTPUT' }), 'app.t').printedAt).toBe('2026-12-02 03:33:07');
  });

  it('keeps the boundary a whole second below the oldest open transaction, however the server counts its age', () => {
    // MariaDB prints ACTIVE n as the print time's second minus the start's second; MySQL 8.0 as the whole seconds of
    // the exact age (std::chrono), one less when the start's fraction is past the print time's. The second left over
    // is for a statement's NOW(), taken a moment before its transaction is registered.
    for (const start of [10, 10.01, 10.5, 10.99]) {
      for (const printed of [start, start + 0.005, 11, 11.999, 12, 12.5]) {
        for (const n of [Math.floor(printed) - Math.floor(start), Math.floor(printed - start)]) {
          const seconds = secondsBeforePrint({ printedAt: '2026-12-02 03:33:07', oldestActiveSeconds: n })!;
          expect(Math.floor(printed) - seconds, `start ${start}, printed ${printed}, ACTIVE ${n} sec`).toBeLessThanOrEqual(start - 1);
        }
      }
    }
  });

  it('refuses an output cut short even when a query it prints names the end marker', () => {
    // Past 1 MB with the list itself that long, the server keeps the first 1 MB and adds no marker: the output stops
    // in the list. A session's query is printed with its transaction, whatever it says.
    const full = monitor(`${ACTIVE}\nSELECT 'END OF INNODB MONITOR OUTPUT' FROM dual\n---TRANSACTION 8571, ACTIVE 90 sec`);
    const cut = full.slice(0, full.indexOf('---TRANSACTION 8571'));
    expect(() => openTransactions(cut, 'app.t')).toThrow(/gave no complete list of open transactions/);
    expect(openTransactions(full, 'app.t').oldestActiveSeconds).toBe(90);
  });

  it('reads the print time of a header whose thread id is in decimal, as MySQL 8.0 prints it on Linux', () => {
    // MySQL 8.0 prints std::this_thread::get_id() without the hex flag; MariaDB and 5.7 print 0x… .
    const open = openTransactions(monitor(ACTIVE, { header: '2026-12-02 03:33:07 139931138000640 INNODB MONITOR OUTPUT' }), 'app.t');
    expect(open).toEqual({ printedAt: '2026-12-02 03:33:07', oldestActiveSeconds: 31 });
  });

  it('refuses a list it cannot read whole, retryably, naming the table', () => {
    for (const status of [monitor(ACTIVE, { truncated: true }), monitor(ACTIVE, { header: 'INNODB MONITOR OUTPUT' }), '', ACTIVE]) {
      let err: unknown;
      try {
        openTransactions(status, 'app.t');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('SOURCE_UNAVAILABLE');
      expect((err as AppError).retryable).toBe(true);
      expect((err as AppError).message).toMatch(/^app\.t: SHOW ENGINE INNODB STATUS gave no complete list of open transactions/);
    }
    expect(() => openTransactions(monitor(ACTIVE, { truncated: true }), 'app.t')).toThrow(/truncated it/);
  });
});
