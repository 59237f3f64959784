import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import { CircuitDestination, FAILURES_TO_OPEN } from './destination-circuit.js';
import type { Destination, SendResult } from './ports.js';

/** A destination answering from a script: 'ok', or an error to throw. */
class Scripted implements Destination {
  readonly sent: string[][] = [];
  next: 'ok' | AppError = 'ok';
  async send(_target: string, records: readonly string[]): Promise<SendResult> {
    this.sent.push([...records]);
    if (this.next !== 'ok') throw this.next;
    return { rows: records.length, latencyMs: 1 };
  }
  async close(): Promise<void> {}
}

const down = (): AppError => new AppError('DEST_UNAVAILABLE', 'HTTP 503', { retryable: true });

function setup() {
  let now = 1_000_000;
  const inner = new Scripted();
  const circuit = new CircuitDestination(inner, { probeEveryMs: 1000, now: () => now });
  const tick = (ms: number): void => {
    now += ms;
  };
  const fail = async (): Promise<void> => {
    const admission = circuit.admit();
    try {
      await expect(circuit.send('t', ['{}'])).rejects.toThrow('HTTP 503');
    } finally {
      admission.done();
    }
  };
  return { inner, circuit, tick, fail };
}

const refused = (circuit: CircuitDestination): AppError => {
  try {
    circuit.admit();
  } catch (err) {
    return err as AppError;
  }
  throw new Error('expected the attempt to be refused');
};

describe('CircuitDestination', () => {
  it('admits every attempt until the destination has failed several requests in a row', async () => {
    const { inner, circuit, fail } = setup();
    inner.next = down();
    for (let i = 0; i < FAILURES_TO_OPEN - 1; i++) await fail();
    expect(circuit.isDown).toBe(false);
    expect(() => circuit.admit().done()).not.toThrow();
    await fail();
    expect(circuit.isDown).toBe(true);
  });

  it('while down, lets one probe through at a time and at most one per interval, refusing the rest retryably', async () => {
    const { inner, circuit, tick, fail } = setup();
    inner.next = down();
    for (let i = 0; i < FAILURES_TO_OPEN; i++) await fail();
    const probe = circuit.admit();
    const busy = refused(circuit);
    expect(busy.code).toBe('DEST_UNAVAILABLE');
    expect(busy.retryable).toBe(true);
    expect(busy.message).toContain('not attempted');
    probe.done();
    // The probe ended less than an interval ago.
    expect(refused(circuit).code).toBe('DEST_UNAVAILABLE');
    tick(1000);
    const second = circuit.admit();
    second.done();
    second.done();
    expect(refused(circuit).code).toBe('DEST_UNAVAILABLE');
    expect(inner.sent).toHaveLength(FAILURES_TO_OPEN);
  });

  it("never refuses a job's last attempt, even while another probes", async () => {
    const { inner, circuit, fail } = setup();
    inner.next = down();
    for (let i = 0; i < FAILURES_TO_OPEN; i++) await fail();
    const probe = circuit.admit();
    expect(refused(circuit).code).toBe('DEST_UNAVAILABLE');
    const last = circuit.admit(true);
    last.done();
    // The last attempt took no probe slot: the probe still holds it, and others are still refused.
    expect(refused(circuit).code).toBe('DEST_UNAVAILABLE');
    probe.done();
  });

  it('lets everything through again once one request is accepted', async () => {
    const { inner, circuit, tick, fail } = setup();
    inner.next = down();
    for (let i = 0; i < FAILURES_TO_OPEN; i++) await fail();
    tick(1000);
    const probe = circuit.admit();
    inner.next = 'ok';
    await expect(circuit.send('t', ['{"a":1}'])).resolves.toEqual({ rows: 1, latencyMs: 1 });
    probe.done();
    expect(circuit.isDown).toBe(false);
    const attempts = [circuit.admit(), circuit.admit(), circuit.admit()];
    for (const a of attempts) a.done();
  });

  it('does not count refusals of what was sent (a rejected or too large request, a bad key) as the destination down', async () => {
    const { inner, circuit } = setup();
    for (const code of ['DEST_TOO_LARGE', 'DEST_ROWS_REJECTED', 'DEST_AUTH'] as const) {
      inner.next = down();
      await expect(circuit.send('t', ['{}'])).rejects.toThrow();
      await expect(circuit.send('t', ['{}'])).rejects.toThrow();
      inner.next = new AppError(code, code);
      await expect(circuit.send('t', ['{}'])).rejects.toThrow(code);
      expect(circuit.isDown).toBe(false);
    }
  });

  it('observes encoded sends too, when the destination has them', async () => {
    const inner = new Scripted();
    const calls: number[] = [];
    const encoded: Destination = {
      send: inner.send.bind(inner),
      close: inner.close.bind(inner),
      sendEncoded: async (_t, _r, from, to) => {
        calls.push(to - from);
        throw down();
      },
    };
    const circuit = new CircuitDestination(encoded, { probeEveryMs: 1000 });
    for (let i = 0; i < FAILURES_TO_OPEN; i++) await expect(circuit.sendEncoded!('t', null as never, 0, 2)).rejects.toThrow('HTTP 503');
    expect(calls).toEqual([2, 2, 2]);
    expect(circuit.isDown).toBe(true);
    expect(new CircuitDestination(inner, { probeEveryMs: 1 }).sendEncoded).toBeUndefined();
  });
});
