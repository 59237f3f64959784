import { describe, expect, it, vi } from 'vitest';
import type { Position } from './cursor.js';
import { ArrayPositionLog, PositionBytes } from './position-log.js';

const positions: Position[] = [
  { wm: '2024-03-01 12:00:00.123456+00', pk: ['1'] },
  { wm: null, pk: ['2', 'b'] },
  { wm: '', pk: [''] },
  { wm: 'żółw 🐢 \u0000 "q" \\', pk: ['ключ', '🐢🐢', 'x'.repeat(5000)] },
  { wm: 'lone \ud800 high', pk: ['a'] },
  { wm: 'w', pk: ['lone \udc00 low'] },
  { wm: 'w', pk: [] },
];

describe('PositionBytes', () => {
  it('gives back every position exactly as pushed, whatever its texts, in order, however often it grows', () => {
    const log = new PositionBytes();
    const pushed: Position[] = [];
    for (let i = 0; i < 3000; i++) {
      const p = positions[i % positions.length]!;
      const varied = { wm: p.wm === null ? null : `${p.wm}${i}`, pk: [...p.pk, String(i)] };
      log.push(varied);
      pushed.push(varied);
    }
    expect(log.length).toBe(3000);
    for (let i = 0; i < pushed.length; i++) expect(log.at(i)).toEqual(pushed[i]);
    expect(log.at(4)).toEqual({ wm: 'lone \ud800 high4', pk: ['a', '4'] });
  });

  it('starts empty again from a reused buffer after release', () => {
    const first = new PositionBytes();
    first.push(positions[3]!);
    first.release();
    const next = new PositionBytes();
    next.push(positions[0]!);
    expect(next.length).toBe(1);
    expect(next.at(0)).toEqual(positions[0]);
  });

  it('takes a buffer only once written to, so a log made and dropped unused keeps none from the next one', () => {
    const fill = (log: PositionBytes): void => {
      for (let i = 0; i < 2000; i++) log.push({ wm: `2024-03-01 12:00:00.${i}+00`, pk: [String(i)] });
    };
    const warm = new PositionBytes();
    fill(warm);
    warm.release();
    const allocations = vi.spyOn(Buffer, 'allocUnsafe');
    try {
      for (let request = 0; request < 10; request++) {
        const used = new PositionBytes();
        fill(used);
        used.release();
        // A sender makes its next request's log as it finishes one, and the last of those is never written to.
        new PositionBytes();
      }
      expect(allocations).not.toHaveBeenCalled();
    } finally {
      allocations.mockRestore();
    }
  });
});

describe('ArrayPositionLog', () => {
  it('keeps the positions themselves', () => {
    const log = new ArrayPositionLog<number>();
    log.push(7);
    log.push(9);
    expect([log.length, log.at(0), log.at(1)]).toEqual([2, 7, 9]);
  });
});
