import { describe, expect, it } from 'vitest';
import { stackOf } from '../queue/backoff-strategy.js';
import { translatePgError } from './postgres-errors.js';

/** A driver error as node-postgres makes it from the server's answer. */
const serverError = (code: string, message: string): Error => Object.assign(new Error(message), { code, severity: 'ERROR' });

describe('translatePgError', () => {
  it('leaves the values a data exception quotes out of the message and of the logged stack, naming the SQLSTATE', () => {
    const cases: Array<[string, string, string]> = [
      ['22P02', 'invalid input syntax for type integer: "SECRET-1"', 'invalid input syntax for type integer: "…"'],
      ['22003', 'value "99999999999SECRET" is out of range for type integer', 'value "…" is out of range for type integer'],
      ['22021', 'invalid byte sequence for encoding "UTF8": 0xc3 0x28', 'invalid byte sequence for encoding "…": 0x…'],
      ['22P02', 'invalid input value for enum mood: "SECRET ""quoted"" x"', 'invalid input value for enum mood: "…"'],
    ];
    for (const [code, message, kept] of cases) {
      const e = translatePgError(serverError(code, message), 'app: read rows of public.people');
      expect(e.message).toBe(
        `app: read rows of public.people: ${kept} (SQLSTATE ${code}; the value is left out: it may be one the table's columns or masks keep from the records)`,
      );
      expect(stackOf(e)).not.toMatch(/SECRET|0xc3/);
      expect(e.details).toEqual({ sqlstate: code });
    }
  });

  it('keeps the messages of other errors whole', () => {
    const e = translatePgError(serverError('42703', 'column "emial" does not exist'), 'app: read rows of public.people');
    expect(e.message).toBe('app: read rows of public.people: column "emial" does not exist');
    expect(e.code).toBe('SOURCE_SCHEMA');
  });
});
