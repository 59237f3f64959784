import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a spawned CLI: the test's own, less pushsync's secrets unless the test sets them. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const name of ['DEFINITE_API_KEY', 'DATABASE_URL', 'PUSHSYNC_WEB_TOKEN', 'PUSHSYNC_CONFIG']) delete base[name];
  return { ...base, ...env };
}

/** The pushsync CLI in a child process, from source. `preload`: modules given to node's --import. */
export function spawnPushsync(args: string[], env: Record<string, string> = {}, preload: string[] = []): ChildProcessWithoutNullStreams {
  const imports = ['tsx', ...preload].flatMap((m) => ['--import', m]);
  return spawn(process.execPath, [...imports, join(ROOT, 'src/cli.ts'), ...args], { cwd: ROOT, env: childEnv(env) });
}

/** Runs the CLI to its end. */
export function runPushsync(args: string[], env: Record<string, string> = {}, preload: string[] = []): Promise<Run> {
  return collect(spawnPushsync(args, env, preload));
}

export function collect(child: ChildProcessWithoutNullStreams): Promise<Run> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A TCP port nothing listens on at the moment (the kernel's choice, released again). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
