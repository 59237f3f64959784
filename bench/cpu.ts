import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU seconds used by every process of a given command name (Linux /proc), to tell where a run's time went:
 * Postgres building JSON, Redis, the receiver, the pipeline itself. Counts every process with that name on the
 * machine, so other work on a shared machine shows up too. Empty on systems without /proc.
 */
const TICKS_PER_SECOND = 100;

export function cpuSecondsByCommand(names: readonly string[]): Map<string, number> {
  const totals = new Map<string, number>(names.map((n) => [n, 0]));
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return totals;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const open = stat.indexOf('(');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(open + 1, close);
      const name = names.find((n) => comm.startsWith(n));
      if (name === undefined) continue;
      // Fields after the command: state is field 3; utime, stime, cutime, cstime are fields 14 to 17. The
      // children's share keeps the CPU of Postgres backends that ended (it moves to the postmaster).
      const fields = stat.slice(close + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      totals.set(name, totals.get(name)! + ticks / TICKS_PER_SECOND);
    } catch {
      // The process ended between listing and reading.
    }
  }
  return totals;
}

export function diffCpu(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  return new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
}

/**
 * CPU seconds of one process and its direct children (Linux /proc), with what its ended children used: one Postgres
 * cluster (its postmaster and backends) when others run on the same machine. 0 on systems without /proc.
 */
export function cpuSecondsOfProcessTree(rootPid: number): number {
  let total = 0;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return 0;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Field 4 (index 1 after the command) is the parent pid.
      if (Number(pid) !== rootPid && Number(fields[1]) !== rootPid) continue;
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return total;
}
