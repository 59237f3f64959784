import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loggerFor, redactUrl } from './logger.js';

describe('redactUrl', () => {
  it('replaces the password and keeps user, host, port and path', () => {
    expect(redactUrl('redis://app:s3cret@cache:6380/2')).toBe('redis://app:***@cache:6380/2');
    expect(redactUrl('rediss://:s3cret@cache')).toBe('rediss://:***@cache');
  });

  it('replaces a password given as a query parameter, which ioredis and node-postgres read too', () => {
    expect(redactUrl('redis://cache:6379/0?password=s3cret')).toBe('redis://cache:6379/0?password=***');
    expect(redactUrl('postgres://db/app?sslpassword=s3cret&application_name=x')).toBe('postgres://db/app?sslpassword=***&application_name=x');
    expect(redactUrl('redis://cache:99999/?password=s3cret')).toBe('redis://cache:99999/');
  });

  it('leaves a URL without password as it is', () => {
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('drops the credentials of text that is not a URL', () => {
    expect(redactUrl('redis://app:s3cret@cache:99999')).toBe('redis://***@cache:99999');
  });
});

describe('loggerFor', () => {
  /** A real stream, as pino-pretty needs one. */
  const capture = (): { lines: string[]; destination: Writable } => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    return { lines, destination };
  };

  it('writes pretty lines with an ISO time, the level and the message, without pid, hostname or service', () => {
    const { lines, destination } = capture();
    loggerFor({ level: 'info', format: 'pretty' }, { isTty: false, destination }).info({ table: 'public.orders' }, 'backfill done');
    expect(lines[0]).toMatch(/^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] INFO: backfill done$/);
    expect(lines[1]).toContain('table: "public.orders"');
    expect(lines.join('\n')).not.toMatch(/pid|hostname|service/);
  });

  it('writes JSON lines whose time is ISO 8601, not epoch milliseconds', () => {
    const { lines, destination } = capture();
    loggerFor({ level: 'info', format: 'json' }, { isTty: true, destination }).info('hello');
    const line = JSON.parse(lines[0]!) as { time: unknown; msg: string };
    expect(line.msg).toBe('hello');
    expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('is pretty on a terminal and JSON otherwise when no format is configured', () => {
    const tty = capture();
    loggerFor({ level: 'info' }, { isTty: true, destination: tty.destination }).info('on a terminal');
    expect(() => JSON.parse(tty.lines[0]!)).toThrow();
    expect(tty.lines[0]).toContain('on a terminal');
    const pipe = capture();
    loggerFor({ level: 'info' }, { isTty: false, destination: pipe.destination }).info('in a pipe');
    expect(JSON.parse(pipe.lines[0]!)).toMatchObject({ msg: 'in a pipe' });
  });

  it('redacts secrets in the pretty form too', () => {
    const { lines, destination } = capture();
    loggerFor({ level: 'info', format: 'pretty' }, { isTty: false, destination }).info({ apiKey: 'sk-live-123', token: 'tok-456' }, 'configured');
    expect(lines.join('\n')).not.toMatch(/sk-live-123|tok-456/);
    expect(lines.join('\n')).toContain('[redacted]');
  });
});
