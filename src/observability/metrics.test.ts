import { describe, expect, it } from 'vitest';
import { createMetrics } from './metrics.js';

/** `name{labels} value` lines of a Prometheus text exposition. */
function samples(text: string): Array<{ name: string; value: number; raw: string }> {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((raw) => ({ name: raw.split(/[{ ]/)[0]!, value: Number(raw.slice(raw.lastIndexOf(' ') + 1)), raw }));
}

describe('metrics', () => {
  it('names every metric with the one prefix pushsync_, never pushsync_process_process_', async () => {
    const text = await createMetrics().registry.metrics();
    const names = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(20);
    for (const name of names) expect(name).toMatch(/^pushsync_/);
    expect(text).not.toContain('process_process');
    expect(names).toEqual(expect.arrayContaining(['pushsync_process_cpu_seconds_total', 'pushsync_nodejs_eventloop_lag_min_seconds']));
  });

  it('ends counters in _total and measures the push duration in seconds', async () => {
    const m = createMetrics();
    m.pushDuration.observe({ source: 'app', table: 't' }, 0.2);
    const text = await m.registry.metrics();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => [x[1]!, x[2]!]));
    for (const name of [
      'pushsync_rows_extracted_total',
      'pushsync_rows_pushed_total',
      'pushsync_rows_rejected_total',
      'pushsync_batches_pushed_total',
      'pushsync_errors_total',
    ]) {
      expect(types.get(name)).toBe('counter');
    }
    expect(types.get('pushsync_push_duration_seconds')).toBe('histogram');
    expect(types.get('pushsync_sync_lag_seconds')).toBe('gauge');
    expect(text).toContain('pushsync_push_duration_seconds_bucket{le="0.25",source="app",table="t"} 1');
  });

  it('reports no NaN and no overflowing event-loop lag, even on scrapes with no event-loop sample between them', async () => {
    const m = createMetrics();
    // Back to back: the second scrape finds the delay histogram just reset, with no sample in it.
    for (const text of [await m.registry.metrics(), await m.registry.metrics()]) {
      for (const s of samples(text)) expect(Number.isFinite(s.value), s.raw).toBe(true);
      for (const s of samples(text).filter((x) => x.name.includes('eventloop_lag'))) expect(s.value, s.raw).toBeLessThan(1e9);
    }
  });
});
