/**
 * The answer of an asynchronous read, shared by every call made within `ttlMs` of the read's start; a read that fails
 * is forgotten at once, so the next call reads again. For values that only become safer with age (a read boundary
 * taken earlier is lower), where one read can serve many callers.
 */
export class Recent<T> {
  private held: { at: number; value: Promise<T> } | undefined;

  constructor(
    private readonly ttlMs: number,
    /** Monotonic: a wall clock set back would keep an old answer for as long. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(read: () => Promise<T>): Promise<T> {
    const at = this.now();
    if (this.held === undefined || at - this.held.at >= this.ttlMs) {
      const value = read();
      this.held = { at, value };
      value.catch(() => {
        if (this.held?.value === value) this.held = undefined;
      });
    }
    return this.held.value;
  }
}
