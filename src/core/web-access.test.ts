import { describe, expect, it } from 'vitest';
import { isLoopback, webAccessProblems } from './web-access.js';

describe('the loopback rule', () => {
  it.each(['127.0.0.1', '127.0.0.2', '127.255.255.254', 'localhost', '::1', '[::1]'])('counts %s as loopback', (host) => {
    expect(isLoopback(host)).toBe(true);
  });

  it.each(['0.0.0.0', '10.0.0.1', '128.0.0.1', '127.example.com', 'localhost.example.com', '::', '::ffff:127.0.0.1', ''])(
    'does not count %s',
    (host) => {
      expect(isLoopback(host)).toBe(false);
    },
  );

  it('asks nothing of a loopback dashboard and a strong credential of any other', () => {
    expect(webAccessProblems('127.0.0.2', {})).toEqual([]);
    expect(webAccessProblems('0.0.0.0', {}).length).toBeGreaterThan(0);
    expect(webAccessProblems('0.0.0.0', { token: 'a'.repeat(16) })).toEqual([]);
    expect(webAccessProblems('0.0.0.0', { token: ' '.repeat(20) }).length).toBeGreaterThan(0);
  });
});
