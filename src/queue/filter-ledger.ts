import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { FilterAction, FilterLedger, Observation, OnFilteredOut } from '../core/filter-ledger.js';

/**
 * The filter ledger of one table in Redis: a hash from a key's token (a SHA-256 of the key as push jobs hold it:
 * sealed when the key is masked) to its entry. One script call decides a chunk atomically, with exactly the rules
 * of `decide` in core/filter-ledger.ts. Entries stay when a table is reset: they describe what the destination
 * holds, not where reading stands. About 100 bytes per key seen.
 */
const OBSERVE = `
local function cmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then if x < y then return -1 else return 1 end end
  end
  if #a < #b then return -1 else return 1 end
end
local mode = ARGV[1]
local out = {}
for i = 2, #ARGV, 3 do
  local token, o, ev = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local entry = redis.call('HGET', KEYS[1], token)
  local action, nextEntry = 'skip', nil
  local c = 1
  if entry then c = cmp(o, string.sub(entry, 2)) end
  if ev == 'match' then
    if c >= 0 then action = 'send'; nextEntry = 'm' .. o end
  elseif ev == 'miss' and mode == 'skip' then
    action = 'skip'
  elseif not entry then
    nextEntry = 's' .. o
  elseif c < 0 then
    action = 'skip'
  elseif string.sub(entry, 1, 1) == 's' then
    if c > 0 then nextEntry = 's' .. o end
  else
    action = 'delete'; nextEntry = 'd' .. o
  end
  if nextEntry then redis.call('HSET', KEYS[1], token, nextEntry) end
  out[#out + 1] = action
end
return out`;

/** Observations per script call: bounds how long one call holds Redis. */
const CALL_SIZE = 1000;

export class RedisFilterLedger implements FilterLedger {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly mode: OnFilteredOut,
  ) {}

  static token(key: readonly string[]): string {
    return createHash('sha256').update(JSON.stringify(key)).digest('base64url').slice(0, 22);
  }

  async observe(observations: readonly Observation[]): Promise<FilterAction[]> {
    const actions: FilterAction[] = [];
    for (let i = 0; i < observations.length; i += CALL_SIZE) {
      const args = observations.slice(i, i + CALL_SIZE).flatMap((o) => [RedisFilterLedger.token(o.key), o.ordering, o.event]);
      actions.push(...((await this.redis.eval(OBSERVE, 1, this.key, this.mode, ...args)) as FilterAction[]));
    }
    return actions;
  }
}
