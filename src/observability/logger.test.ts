import { describe, expect, it } from 'vitest';
import { redactUrl } from './logger.js';

describe('redactUrl', () => {
  it('replaces the password and keeps user, host, port and path', () => {
    expect(redactUrl('redis://app:s3cret@cache:6380/2')).toBe('redis://app:***@cache:6380/2');
    expect(redactUrl('rediss://:s3cret@cache')).toBe('rediss://:***@cache');
  });

  it('leaves a URL without password as it is', () => {
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('drops the credentials of text that is not a URL', () => {
    expect(redactUrl('redis://app:s3cret@cache:99999')).toBe('redis://***@cache:99999');
  });
});
