import { AppError } from '../core/errors.js';
import { EPOCH_DIGITS } from '../core/ordering-epoch.js';
import type { Keys, RedisClient } from './redis.js';

/**
 * Where ordering epochs are kept (core/ordering-epoch.ts). One counter for every source under the prefix holds the
 * newest epoch given out; it survives `cdc reset`, which deletes the stream's state. Each stream records its epoch
 * in its state hash (`epoch`; absent for a stream started before epochs existed: epoch 0). A new stream takes the
 * next epoch, except the very first one (no counter yet), which is epoch 0. One counter, not one per source: a
 * source renamed (its slot, state and cursors start over under the new name) or split keeps sending to the same
 * targets, and its new stream must sort after what the old one sent.
 *
 * Each target table also records the newest epoch that sent records to it. A stream whose epoch is older than that
 * (a table moved to a source whose stream started before the other source's reset, or a stream an older version
 * created during a rolling upgrade) would sort below records already there: it is refused, with what to do.
 */

/**
 * KEYS[1]: the epoch counter, KEYS[2]: the stream's state hash, KEYS[3]: the targets' epochs; ARGV[1]: the stream's
 * start position, ARGV[2..]: its targets. Takes the stream's epoch and records the stream's start with it in one
 * step: a crash in between cannot leave a stream recorded without its epoch. (A crash before it takes another epoch
 * next time: epochs only grow.) A counter lower than what the targets hold (lost with a Redis failover) is first
 * raised to it, so a new stream is never older than its targets' records.
 */
const START_STREAM = `
local c = tonumber(redis.call('GET', KEYS[1]) or '-1')
for i = 2, #ARGV do
  local held = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '-1')
  if held > c then c = held end
end
local e = c + 1
if c < 0 then e = 0 end
redis.call('SET', KEYS[1], e)
redis.call('HSET', KEYS[2], 'slotStart', ARGV[1], 'ackedLsn', ARGV[1], 'ackExact', '1', 'epoch', e)
return e`;

/** KEYS[1]: the epoch counter; ARGV[1]: an epoch in use. The counter is raised to it when lower or missing. */
const KEEP_EPOCH = `
local c = tonumber(redis.call('GET', KEYS[1]) or '-1')
if c < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`;

/**
 * KEYS[1]: the targets' epochs; ARGV[1]: the stream's epoch, ARGV[2..]: its targets. Records the epoch for every
 * target unless one of them already holds records of a later epoch: then nothing is recorded and the reply is that
 * target and its epoch.
 */
const CLAIM_TARGETS = `
local e = tonumber(ARGV[1])
for i = 2, #ARGV do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if held > e then return {ARGV[i], tostring(held)} end
end
for i = 2, #ARGV do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if held < e then redis.call('HSET', KEYS[1], ARGV[i], e) end
end
return {}`;

/** Records a new stream that starts at `start`, sending to `targets`, and returns its epoch. */
export async function startStream(redis: RedisClient, keys: Keys, stateKey: string, start: string, targets: readonly string[]): Promise<number> {
  return Number(await redis.eval(START_STREAM, 3, keys.cdcEpoch(), stateKey, keys.cdcTargetEpochs(), start, ...targets));
}

/** The epoch recorded in a stream's state (`epoch` field): absent is 0, a stream older than epochs. */
export function recordedEpoch(field: string | null | undefined, stateKey: string): number {
  if (field === null || field === undefined) return 0;
  if (!new RegExp(`^\\d{1,${EPOCH_DIGITS}}$`).test(field))
    throw new AppError(
      'CURSOR_INVALID',
      `${stateKey}: the stream's ordering epoch ${JSON.stringify(field)} is not a count of up to ${EPOCH_DIGITS} digits`,
    );
  return Number(field);
}

/**
 * Makes sure the counter knows an epoch in use (a stream started before epochs existed, or the counter lost), so
 * that the next stream, after a reset, starts a later one.
 */
export async function keepEpoch(redis: RedisClient, keys: Keys, epoch: number): Promise<void> {
  await redis.eval(KEEP_EPOCH, 1, keys.cdcEpoch(), String(epoch));
}

/**
 * Records that a stream of `epoch` sends to `targets`, or refuses it (CURSOR_INVALID) when one of them already
 * holds records of a later stream, which its records would sort below.
 */
export async function claimTargets(redis: RedisClient, keys: Keys, source: string, epoch: number, targets: readonly string[]): Promise<void> {
  if (targets.length === 0) return;
  const conflict = (await redis.eval(CLAIM_TARGETS, 1, keys.cdcTargetEpochs(), String(epoch), ...targets)) as string[];
  if (conflict.length === 0) return;
  const [target, held] = conflict as [string, string];
  throw new AppError(
    'CURSOR_INVALID',
    `${target} holds records of a later change stream (ordering epoch ${held}) than source ${source}'s (epoch ${epoch}): ` +
      `its records would sort below them and never become the current state; run "pushsync cdc reset --source ${source}" to ` +
      `snapshot its tables again in a new epoch`,
  );
}

/**
 * Refuses (CURSOR_INVALID) to send `what`'s orderings, which carry no epoch (Debezium's), to a target that holds
 * records of one of pushsync's change streams after the first: those sort after every ordering without an epoch.
 */
export async function refuseLaterEpochs(redis: RedisClient, keys: Keys, what: string, targets: readonly string[]): Promise<void> {
  if (targets.length === 0) return;
  const held = await redis.hmget(keys.cdcTargetEpochs(), ...targets);
  const at = held.findIndex((e) => e !== null && Number(e) > 0);
  if (at < 0) return;
  throw new AppError(
    'CURSOR_INVALID',
    `${targets[at]} holds records of pushsync's change data capture in ordering epoch ${held[at]}, which sort after every ordering ` +
      `${what} sends: its records would never become the current state; send the table to another target`,
  );
}

/** The epoch a stream that starts now would take (for `preview` of a source whose stream is not recorded yet). */
export async function nextEpoch(redis: RedisClient, keys: Keys): Promise<number> {
  const current = await redis.get(keys.cdcEpoch());
  return current === null ? 0 : Number(current) + 1;
}
