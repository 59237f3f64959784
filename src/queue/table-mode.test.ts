import { describe, expect, it } from 'vitest';
import { serializeCursor } from '../core/cursor.js';
import { jobFate, jobMode, storedMode, watermarkStart } from './table-mode.js';

const pk = serializeCursor({ phase: 'pk', after: { wm: null, pk: ['9'] } });
const wm = serializeCursor({ phase: 'wm', after: { wm: '2026-01-01 00:00:00+00', pk: ['9'] } });
const base = { v: 1 as const, source: 'app', table: 't', target: 'bronze.t', rows: 1, cutAt: '2026-01-01T00:00:00Z' };

describe('table modes', () => {
  it('tells what a watermark run must do first from the recorded mode, else from what CDC left', () => {
    expect(watermarkStart('watermark', pk, true, 't')).toBe('ready');
    expect(watermarkStart('watermark-pending', null, false, 't')).toBe('finish');
    expect(watermarkStart('cdc', null, false, 't')).toBe('switch');
    // Nothing recorded (state from before modes were): a snapshot cursor or a finished CDC snapshot tells.
    expect(watermarkStart(null, pk, false, 't')).toBe('switch');
    expect(watermarkStart(null, wm, true, 't')).toBe('switch');
    expect(watermarkStart(null, wm, false, 't')).toBe('ready');
    expect(watermarkStart(null, null, false, 't')).toBe('ready');
  });

  it('tells the mode a CDC run finds the state in', () => {
    expect(storedMode('watermark-pending', pk, 't')).toBe('watermark');
    expect(storedMode('cdc', wm, 't')).toBe('cdc');
    expect(storedMode(null, wm, 't')).toBe('watermark');
    expect(storedMode(null, pk, 't')).toBe('cdc');
    expect(storedMode(null, null, 't')).toBeNull();
    expect(() => storedMode(null, '{"v":1,"phase":"x"}', 'app.t')).toThrow(/stored cursor for app\.t/);
  });

  it('classifies push jobs by the mode that cut them', () => {
    const range = (phase: 'null' | 'wm' | 'pk') => ({ ...base, range: { phase, lo: null, hi: { wm: phase === 'wm' ? '2026' : null, pk: ['1'] } } });
    expect(jobMode(range('pk'))).toBe('cdc');
    expect(jobMode(range('wm'))).toBe('watermark');
    expect(jobMode(range('null'))).toBe('watermark');
    expect(jobMode({ ...base, changes: [{ op: 'update', pk: ['1'], ordering: '~0000000001000000:0000000001' }] })).toBe('cdc');
    expect(jobMode({ ...base, changes: [{ op: 'update', pk: ['1'], ordering: '~~000002~0000000001000000:0000000001' }] })).toBe('cdc');
    // Reconciliation's deletes, ordered by the time of the check.
    expect(jobMode({ ...base, changes: [{ op: 'delete', pk: ['1'], ordering: '2026-12-02T14:00:00.000000Z' }] })).toBe('watermark');
  });

  it('sends jobs of the recorded mode, supersedes the other mode’s, and holds watermark jobs of a table configured for CDC', () => {
    expect(jobFate('cdc', 'cdc', 'watermark')).toBe('send');
    expect(jobFate('cdc', 'watermark', 'watermark')).toBe('superseded');
    expect(jobFate('cdc', 'watermark-pending', 'watermark')).toBe('superseded');
    expect(jobFate('watermark', 'cdc', 'cdc')).toBe('superseded');
    expect(jobFate('watermark', 'watermark', 'cdc')).toBe('wait');
    expect(jobFate('watermark', null, 'cdc')).toBe('wait');
    expect(jobFate('watermark', 'watermark', 'watermark')).toBe('send');
    expect(jobFate('cdc', null, 'watermark')).toBe('send');
  });
});
