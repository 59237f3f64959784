import { hash } from 'node:crypto';
import type { RedisClient } from './redis.js';
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
-- ARGV[1] mode, ARGV[2] the tokens (fixed width, concatenated), ARGV[3] the events (one letter each: m match,
-- n miss, g gone), ARGV[4..] the orderings.
local mode, packed, events = ARGV[1], ARGV[2], ARGV[3]
local width = tonumber(ARGV[4])
local tokens = {}
for j = 1, #events do tokens[j] = string.sub(packed, (j - 1) * width + 1, j * width) end
local entries = redis.call('HMGET', KEYS[1], unpack(tokens))
-- A key seen twice in one call is decided against what the earlier observation stored.
local pending = {}
local out = {}
local writes = {}
for j = 1, #tokens do
  local token, o, ev = tokens[j], ARGV[4 + j], string.sub(events, j, j)
  local entry = pending[token]
  if entry == nil then entry = entries[j] end
  local action, nextEntry = 'skip', nil
  local c = 1
  if entry then c = cmp(o, string.sub(entry, 2)) end
  if ev == 'm' then
    if c >= 0 then action = 'send'; nextEntry = 'm' .. o end
  elseif ev == 'n' and mode == 'skip' then
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
  if nextEntry then
    pending[token] = nextEntry
    writes[#writes + 1] = token
    writes[#writes + 1] = nextEntry
  end
  out[#out + 1] = action
end
if #writes > 0 then redis.call('HSET', KEYS[1], unpack(writes)) end
return out`;

const TOKEN_CHARS = 22;
const EVENT_LETTER = { match: 'm', miss: 'n', gone: 'g' } as const;

/** Observations per script call: bounds how long one call holds Redis, and stays within Lua's unpack limit. */
const CALL_SIZE = 2000;

export class RedisFilterLedger implements FilterLedger {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly mode: OnFilteredOut,
  ) {}

  /** 22 characters (132 bits of SHA-256): the same for every key of any length. */
  static token(key: readonly string[]): string {
    return hash('sha256', JSON.stringify(key), 'base64url').slice(0, TOKEN_CHARS);
  }

  async observe(observations: readonly Observation[]): Promise<FilterAction[]> {
    const actions: FilterAction[] = [];
    for (let i = 0; i < observations.length; i += CALL_SIZE) {
      const chunk = observations.slice(i, i + CALL_SIZE);
      // Few large arguments instead of three per observation: the per-argument cost dominates otherwise.
      const tokens = chunk.map((o) => RedisFilterLedger.token(o.key)).join('');
      const events = chunk.map((o) => EVENT_LETTER[o.event]).join('');
      const orderings = chunk.map((o) => o.ordering);
      actions.push(
        ...((await this.redis.eval(OBSERVE, 1, this.key, this.mode, tokens, events, String(TOKEN_CHARS), ...orderings)) as FilterAction[]),
      );
    }
    return actions;
  }
}
