import { describe, expect, it } from 'vitest';
import { Recent } from './recent.js';

describe('Recent', () => {
  it('shares one read among the calls made within its time, and reads again after it', async () => {
    let clock = 1000;
    let reads = 0;
    const recent = new Recent<number>(1000, () => clock);
    const read = async (): Promise<number> => ++reads;
    expect(await Promise.all([recent.get(read), recent.get(read)])).toEqual([1, 1]);
    clock = 1999;
    expect(await recent.get(read)).toBe(1);
    clock = 2000;
    expect(await recent.get(read)).toBe(2);
    expect(reads).toBe(2);
  });

  it('forgets a read that failed, so the next call reads again', async () => {
    const recent = new Recent<string>(60_000, () => 0);
    await expect(recent.get(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(await recent.get(async () => 'up')).toBe('up');
  });
});
