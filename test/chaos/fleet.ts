import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = new URL('../..', import.meta.url).pathname;

/** What `pushsync status --json` says of the run of `configPath` (its output and errors), for a failed run's log. */
export function pushsyncStatus(configPath: string): string {
  const res = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', configPath, 'status', '--json'], {
    cwd: ROOT,
    timeout: 60_000,
  });
  return `${res.stdout.toString().trim()}\n${res.stderr.toString().trim()}`;
}

/**
 * The pushsync processes of a chaos run, each started, SIGKILLed and restarted by name. With `logDir` each process
 * appends its log to `<logDir>/<name>.log` (a restarted worker continues its file), so a run that does not converge
 * can be read afterwards.
 */
export class Fleet {
  private readonly procs = new Map<string, ChildProcess>();
  private stopping = false;

  constructor(
    private readonly configPath: string,
    private readonly logDir?: string,
  ) {}

  start(name: string, roles: string[]): void {
    // One process per worker (node with the tsx loader, not the tsx launcher): SIGKILL must hit the worker itself.
    const args = [
      '--import',
      'tsx',
      join(ROOT, 'src/cli.ts'),
      '--config',
      this.configPath,
      'start',
      '--port',
      '0',
      ...roles.flatMap((r) => ['--role', r]),
    ];
    if (this.logDir) mkdirSync(this.logDir, { recursive: true });
    const out = this.logDir ? openSync(join(this.logDir, `${name}.log`), 'a') : 'ignore';
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', out, 'inherit'] });
    if (typeof out === 'number') closeSync(out);
    // A worker that dies on its own (not SIGKILLed here, not stopped at the end) is reported: the run then depends
    // on the others, and a non-converging run should say so.
    proc.once('exit', (code, signal) => {
      if (this.procs.get(name) === proc && !this.stopping && signal !== 'SIGKILL')
        process.stdout.write(`[chaos] ${name} exited by itself (code ${code}, signal ${signal})\n`);
    });
    this.procs.set(name, proc);
  }

  async kill(name: string): Promise<void> {
    const proc = this.procs.get(name);
    if (!proc || proc.exitCode !== null) return;
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const p of this.procs.values()) p.kill('SIGTERM');
    await sleep(3000);
    for (const p of this.procs.values()) if (p.exitCode === null) p.kill('SIGKILL');
  }
}
