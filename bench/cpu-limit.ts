import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A CPU quota for one process, as a container's CPU limit sets it: the Linux CFS bandwidth control of a cgroup of
 * its own (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` under the `cpu` controller). The process may use `cores`
 * CPU-seconds per second of wall time, over all its threads, and is held back beyond that, however idle the
 * machine's cores are. Needs a writable cgroup file system (root, or a delegated subtree); `available` says
 * whether this machine has one, without changing anything.
 */
export interface CpuLimit {
  /** Moves the process (every thread of it) into the limited group. */
  add(pid: number): void;
  /** Removes the group; its processes must have exited. */
  remove(): void;
}

const PERIOD_US = 100_000;
const V2_ROOT = '/sys/fs/cgroup';
const V1_ROOT = '/sys/fs/cgroup/cpu';

function layout(): { root: string; v2: boolean } | undefined {
  if (existsSync(join(V2_ROOT, 'cgroup.controllers'))) {
    const controllers = readFileSync(join(V2_ROOT, 'cgroup.controllers'), 'utf8');
    return controllers.split(/\s+/).includes('cpu') ? { root: V2_ROOT, v2: true } : undefined;
  }
  return existsSync(join(V1_ROOT, 'cpu.cfs_quota_us')) ? { root: V1_ROOT, v2: false } : undefined;
}

/** Why no limit can be set here, or undefined when one can. */
export function cpuLimitUnavailable(): string | undefined {
  const where = layout();
  if (where === undefined) return 'no cgroup cpu controller is mounted';
  const probe = join(where.root, `pushsync-bench-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return undefined;
  } catch (err) {
    return `cannot create a cgroup under ${where.root}: ${(err as Error).message}`;
  }
}

/** A new group limited to `cores` (for example 0.25: a quarter of one core), named after `name`. */
export function createCpuLimit(name: string, cores: number): CpuLimit {
  const where = layout();
  if (where === undefined) throw new Error('no cgroup cpu controller is mounted');
  const dir = join(where.root, `pushsync-bench-${name}`);
  mkdirSync(dir);
  const quota = Math.max(1000, Math.round(cores * PERIOD_US));
  if (where.v2) writeFileSync(join(dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
  else {
    writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
    writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quota));
  }
  return {
    add(pid) {
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    },
    remove() {
      rmdirSync(dir);
    },
  };
}
