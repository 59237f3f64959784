/**
 * Concurrent writers of a chaos workload: `start(n)` runs `step()` in n loops until `stop()`; `pause()` holds new
 * steps and resolves once none is running (a late commit needs the source idle). Engines supply `step()`.
 */
export abstract class WriterLoop {
  private stopped = false;
  private paused: Promise<void> | null = null;
  private resumePaused: (() => void) | null = null;
  private busy = 0;
  private idle: Array<() => void> = [];
  private readonly running: Promise<void>[] = [];
  ops = 0;

  constructor(protected readonly random: () => number) {}

  protected abstract step(): Promise<void>;

  protected int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** Stops starting operations and resolves once none is running. */
  async pause(): Promise<void> {
    this.paused ??= new Promise((r) => (this.resumePaused = r));
    if (this.busy > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  resume(): void {
    this.resumePaused?.();
    this.paused = null;
  }

  start(concurrency: number): void {
    for (let i = 0; i < concurrency; i++) {
      this.running.push(
        (async () => {
          while (!this.stopped) {
            if (this.paused) {
              await this.paused;
              continue;
            }
            this.busy += 1;
            try {
              await this.step();
            } finally {
              this.busy -= 1;
              if (this.busy === 0) for (const r of this.idle.splice(0)) r();
            }
          }
        })(),
      );
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.resume();
    await Promise.all(this.running);
  }
}
