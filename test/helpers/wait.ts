export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `condition` holds, failing after a generous `withinMs` (a bound on a hang, not a timing check). */
export async function eventually(condition: () => boolean | Promise<boolean>, pollMs = 20, withinMs = 15_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${withinMs} ms`);
    await sleep(pollMs);
  }
}
