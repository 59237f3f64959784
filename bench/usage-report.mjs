// Preloaded into the CLI under measurement (`node --import`): at exit it writes the process's own CPU seconds, peak
// RSS and event-loop utilisation to PUSHSYNC_BENCH_USAGE_FILE. With PUSHSYNC_BENCH_MEMORY=1 it also samples
// process.memoryUsage() every 100 ms and reports the breakdown at the highest RSS it saw (V8 heap, external, array
// buffers; the rest is code, native libraries and allocator slack). Plain JavaScript, so nothing is transpiled.
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { setInterval } from 'node:timers';

const file = process.env.PUSHSYNC_BENCH_USAGE_FILE;
if (file) {
  let atPeak;
  if (process.env.PUSHSYNC_BENCH_MEMORY === '1') {
    setInterval(() => {
      const m = process.memoryUsage();
      if (atPeak === undefined || m.rss > atPeak.rss) atPeak = m;
    }, 100).unref();
  }
  process.on('exit', () => {
    const u = process.resourceUsage();
    const usage = {
      cpuSeconds: (u.userCPUTime + u.systemCPUTime) / 1e6,
      peakRss: u.maxRSS * 1024,
      eventLoopBusy: performance.eventLoopUtilization().utilization,
      ...(atPeak ? { memoryAtPeak: atPeak } : {}),
    };
    writeFileSync(file, JSON.stringify(usage));
  });
}
