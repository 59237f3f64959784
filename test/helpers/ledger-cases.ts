/**
 * Decision cases of the filter ledger, run by src/core/filter-ledger.test.ts against the rules in TypeScript and by
 * src/queue/filter-ledger.int.test.ts against the Redis script: the two must decide alike.
 */
export const LEDGER_CASES: Array<{ name: string; mode: 'delete' | 'skip'; steps: Array<[string, 'match' | 'miss' | 'gone', string]> }> = [
  {
    name: 'a key that never matched never leaves, not even as a delete',
    mode: 'delete',
    steps: [
      ['a', 'miss', 'skip'],
      ['b', 'miss', 'skip'],
      ['c', 'gone', 'skip'],
    ],
  },
  {
    name: 'a key that matched and stops matching becomes one delete',
    mode: 'delete',
    steps: [
      ['a', 'match', 'send'],
      ['b', 'miss', 'delete'],
      ['c', 'miss', 'delete'],
      ['d', 'match', 'send'],
    ],
  },
  {
    name: 'skip sends nothing for a row that stops matching, but a real delete of a sent key still leaves',
    mode: 'skip',
    steps: [
      ['a', 'match', 'send'],
      ['b', 'miss', 'skip'],
      ['c', 'gone', 'delete'],
    ],
  },
  {
    name: 'an older matching version decided after a newer miss is not sent',
    mode: 'delete',
    steps: [
      ['b', 'miss', 'skip'],
      ['a', 'match', 'skip'],
    ],
  },
  {
    name: 'an older version decided after a newer delete is not sent',
    mode: 'delete',
    steps: [
      ['a', 'match', 'send'],
      ['c', 'miss', 'delete'],
      ['b', 'match', 'skip'],
    ],
  },
  {
    name: 'a retried version repeats its decision',
    mode: 'delete',
    steps: [
      ['a', 'match', 'send'],
      ['a', 'match', 'send'],
      ['b', 'miss', 'delete'],
      ['b', 'miss', 'delete'],
    ],
  },
  {
    name: 'rows without an ordering sort first',
    mode: 'delete',
    steps: [
      ['', 'match', 'send'],
      ['a', 'miss', 'delete'],
      ['', 'match', 'skip'],
    ],
  },
  {
    name: 'a key read again at the same ordering but outside the filter becomes a delete',
    mode: 'delete',
    steps: [
      ['a', 'match', 'send'],
      ['a', 'miss', 'delete'],
    ],
  },
];
