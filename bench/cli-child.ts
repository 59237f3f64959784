import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * pushsync as users run it: the built CLI (`node dist/cli.js`, as the Dockerfile does) in a child process, with a
 * config file, measured from outside the bench process so that neither tsx nor the bench's own modules count.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli.js');
const USAGE_REPORT = new URL('./usage-report.mjs', import.meta.url).href;
/** Extra node flags for the CLI, for profiling it (e.g. `--heap-prof`, `--trace-gc`); none by default. */
const NODE_FLAGS = (process.env.BENCH_CLI_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');

/** `npm run build`, so the CLI measured is the source of this checkout. */
export function buildCli(): void {
  const t0 = performance.now();
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.signal})`);
  console.log(`built dist/ (npm run build) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** What the child reported about itself at exit (bench/usage-report.mjs), over its whole life. */
export interface CliUsage {
  /** user + system CPU seconds, start-up included. */
  cpuSeconds: number;
  /** Peak resident set size (getrusage maxrss), bytes. */
  peakRss: number;
  eventLoopBusy: number;
  /** process.memoryUsage() at the highest RSS sampled, with BENCH_MEMORY=1. */
  memoryAtPeak?: NodeJS.MemoryUsage;
}

export interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Wall time from spawning to exit. */
  seconds: number;
  stdout: string;
  usage: CliUsage;
}

export interface CliChild {
  pid: number;
  /** Peak RSS so far (VmHWM), bytes; 0 once the process is gone. */
  peakRssSoFar(): number;
  exited: Promise<CliExit>;
  kill(): void;
}

function statusField(pid: number, field: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

/**
 * The Dockerfile's `ENV NODE_OPTIONS=…` (its heap limit), so that the bench's CLI runs with the options the image
 * runs with; '' when it sets none.
 */
export function dockerNodeOptions(): string {
  const line = /^ENV NODE_OPTIONS=(.*)$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  return line ? line[1]!.trim() : '';
}

/**
 * Runs `node dist/cli.js --config <file> <args…>` with `config` written as the config file (JSON is YAML).
 * NODE_OPTIONS is the Dockerfile's, not the bench's own (tsx's loader must not reach the child).
 */
export function startCli(config: unknown, args: readonly string[]): CliChild {
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-bench-'));
  const configFile = join(dir, 'pushsync.yaml');
  const usageFile = join(dir, 'usage.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const env: NodeJS.ProcessEnv = { ...process.env, PUSHSYNC_BENCH_USAGE_FILE: usageFile, PUSHSYNC_BENCH_MEMORY: process.env.BENCH_MEMORY ?? '0' };
  const nodeOptions = dockerNodeOptions();
  if (nodeOptions === '') delete env.NODE_OPTIONS;
  else env.NODE_OPTIONS = nodeOptions;
  const started = performance.now();
  const child = spawn(process.execPath, [...NODE_FLAGS, '--import', USAGE_REPORT, CLI, '--config', configFile, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const exited = new Promise<CliExit>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const seconds = (performance.now() - started) / 1000;
      try {
        const usage = JSON.parse(readFileSync(usageFile, 'utf8')) as CliUsage;
        resolve({ code, signal, seconds, stdout, usage });
      } catch (err) {
        reject(new Error(`the CLI exited (${code ?? signal}) without reporting its usage: ${(err as Error).message}\n${stdout}`));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
  const pid = child.pid!;
  return { pid, peakRssSoFar: () => statusField(pid, 'VmHWM'), exited, kill: () => child.kill('SIGTERM') };
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** The memory breakdown at the peak, when BENCH_MEMORY=1 asked for it; empty otherwise. */
export function memoryLine(usage: CliUsage): string {
  const m = usage.memoryAtPeak;
  if (m === undefined) return '';
  return (
    `  at the highest sampled RSS ${mb(m.rss)}: V8 heap used ${mb(m.heapUsed)} of ${mb(m.heapTotal)}, ` +
    `external ${mb(m.external)} (array buffers ${mb(m.arrayBuffers)}), the rest (code, native, allocator) ${mb(m.rss - m.heapTotal - m.external)}`
  );
}

/** CPU seconds and peak RSS of the CLI doing nothing but load its modules (`--version`): start-up's share. */
export async function cliStartup(): Promise<CliUsage> {
  return (await startCli({}, ['--version']).exited).usage;
}
