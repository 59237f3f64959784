import { describe, expect, it } from 'vitest';
import { MemoryLedger, decide, type Observation } from './filter-ledger.js';
import { LEDGER_CASES } from '../../test/helpers/ledger-cases.js';

describe('the filter ledger decisions', () => {
  it.each(LEDGER_CASES)('$name', async ({ mode, steps }) => {
    const ledger = new MemoryLedger(mode);
    const observations: Observation[] = steps.map(([ordering, event]) => ({ key: ['1'], ordering, event }));
    expect(await ledger.observe(observations)).toEqual(steps.map(([, , action]) => action));
  });

  it('keeps keys apart', async () => {
    const ledger = new MemoryLedger('delete');
    expect(
      await ledger.observe([
        { key: ['1'], ordering: 'a', event: 'match' },
        { key: ['2'], ordering: 'b', event: 'miss' },
        { key: ['1'], ordering: 'c', event: 'miss' },
      ]),
    ).toEqual(['send', 'skip', 'delete']);
  });

  it('keeps the entry of an older observation as it was', () => {
    expect(decide('mb', { key: ['1'], ordering: 'a', event: 'miss' }, 'delete')).toEqual({ action: 'skip', next: null });
    expect(decide('sb', { key: ['1'], ordering: 'c', event: 'gone' }, 'delete')).toEqual({ action: 'skip', next: 'sc' });
  });
});
