import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { LEDGER_CASES } from '../../test/helpers/ledger-cases.js';
import { RedisFilterLedger } from './filter-ledger.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

describe('the filter ledger in Redis', () => {
  const prefix = uniqueName('ps');
  const redis = new Redis(REDIS_URL);
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    await redis.quit();
  });

  it.each(LEDGER_CASES.map((c, i) => ({ ...c, i })))('decides like the core rules: $name', async ({ mode, steps, i }) => {
    const ledger = new RedisFilterLedger(redis, `${prefix}:filter:${i}`, mode);
    // One call for all steps, and one call per step: the same decisions.
    const obs = steps.map(([ordering, event]) => ({ key: ['1'], ordering, event }));
    expect(await ledger.observe(obs)).toEqual(steps.map(([, , action]) => action));
    const stepwise = new RedisFilterLedger(redis, `${prefix}:filter:${i}:b`, mode);
    const actions: string[] = [];
    for (const o of obs) actions.push(...(await stepwise.observe([o])));
    expect(actions).toEqual(steps.map(([, , action]) => action));
  });

  it('holds a hash of each key, never the key', async () => {
    const ledger = new RedisFilterLedger(redis, `${prefix}:filter:keys`, 'delete');
    await ledger.observe([{ key: ['4111111111111111'], ordering: 'a', event: 'match' }]);
    const entries = await redis.hgetall(`${prefix}:filter:keys`);
    expect(Object.keys(entries)).toHaveLength(1);
    expect(JSON.stringify(entries)).not.toContain('4111111111111111');
  });
});
