// Preloaded into the CLI under measurement (`node --import`): at exit it writes the process's own CPU seconds, peak
// RSS and event-loop utilisation to PUSHSYNC_BENCH_USAGE_FILE. Plain JavaScript, so nothing is transpiled.
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const file = process.env.PUSHSYNC_BENCH_USAGE_FILE;
if (file) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    const usage = {
      cpuSeconds: (u.userCPUTime + u.systemCPUTime) / 1e6,
      peakRss: u.maxRSS * 1024,
      eventLoopBusy: performance.eventLoopUtilization().utilization,
    };
    writeFileSync(file, JSON.stringify(usage));
  });
}
