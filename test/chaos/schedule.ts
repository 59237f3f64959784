import { setTimeout as sleep } from 'node:timers/promises';
import type { Fleet } from './fleet.js';

/** One fault of a chaos run, at a fraction of the writing time. */
export interface ChaosEvent {
  fraction: number;
  name: string;
  run: () => Promise<void>;
}

/**
 * Five SIGKILLs of a worker (w1 or w2), each restarted after a pause; who, how long and when come from `random`, in
 * that order, so a seed gives every engine's driver the same schedule.
 */
export function workerKills(random: () => number, fleet: Fleet): ChaosEvent[] {
  const events: ChaosEvent[] = [];
  for (let i = 0; i < 5; i++) {
    const who = random() < 0.5 ? 'w1' : 'w2';
    const downMs = 300 + Math.floor(random() * 1500);
    events.push({
      fraction: 0.05 + random() * 0.85,
      name: `SIGKILL ${who}`,
      run: async () => {
        await fleet.kill(who);
        await sleep(downMs);
        fleet.start(who, ['extract', 'push']);
      },
    });
  }
  return events;
}

/**
 * CDC mode, twice near the end: a long transaction commits right after an idle moment (when the reader has just
 * acknowledged the server's position) and every worker is SIGKILLed before the reader's next flush.
 */
export function lateCommitKills(
  random: () => number,
  fleet: Fleet,
  lateCommitAfterIdle: (idleMs: number, afterCommit: () => Promise<void>) => Promise<void>,
): ChaosEvent[] {
  return [0.8, 0.93].map((fraction) => {
    const idleMs = 1200 + Math.floor(random() * 1000);
    const killAfterMs = Math.floor(random() * 300);
    return {
      fraction,
      name: `late commit after ${idleMs} ms idle, SIGKILL of every worker ${killAfterMs} ms later`,
      run: () =>
        lateCommitAfterIdle(idleMs, async () => {
          await sleep(killAfterMs);
          await Promise.all([fleet.kill('w1'), fleet.kill('w2')]);
          await sleep(300);
          fleet.start('w1', ['extract', 'push']);
          fleet.start('w2', ['extract', 'push']);
        }),
    };
  });
}

/** Runs the events in time order, each at `start + fraction × writeMs`, logging its name as it starts. */
export async function runSchedule(events: ChaosEvent[], start: number, writeMs: number, log: (msg: string) => void): Promise<void> {
  for (const e of [...events].sort((a, b) => a.fraction - b.fraction)) {
    await sleep(Math.max(0, start + e.fraction * writeMs - Date.now()));
    log(e.name);
    await e.run();
  }
}
