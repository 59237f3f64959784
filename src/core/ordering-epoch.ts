import { AppError } from './errors.js';
import type { ChangeSource, ChangeStreamEvent } from './ports.js';

/**
 * Ordering epochs: each durable stream a source starts after its first one (after `pushsync cdc reset`: the source
 * moved to another server, a binlog started over, a slot was lost) is a new epoch, and every `_ordering` it hands
 * out carries it. A stream's positions say nothing about another stream's: a server restored from a dump, or a
 * MariaDB after `RESET MASTER`, starts its positions again below every one the old server reached, and without the
 * epoch the old server's versions of a key would stay the newest downstream for good (and a key deleted there would
 * stay deleted).
 *
 * The first stream (epoch 0) keeps the plain form, so nothing already sent changes. A later epoch puts `~~` and the
 * epoch in six digits before it: `~~` sorts after `~` followed by anything else (every CDC position form, `~ts:`,
 * `~infinity`, seven-digit years), so an epoch's orderings sort after every earlier epoch's and after every watermark,
 * and within an epoch they keep their order.
 */
export const EPOCH_DIGITS = 6;

/** What every `_ordering` of a stream of `epoch` starts with: nothing for the first stream. */
export function epochPrefix(epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch >= 10 ** EPOCH_DIGITS)
    throw new AppError('CURSOR_INVALID', `ordering epoch ${epoch} is not a count below ${10 ** EPOCH_DIGITS}`);
  return epoch === 0 ? '' : `~~${String(epoch).padStart(EPOCH_DIGITS, '0')}`;
}

/**
 * `source` with its orderings in `epoch`: the snapshot orderings it gives and the orderings of the changes and
 * relation descriptions it streams. Positions (what the stream acknowledges and compares) are untouched: only what
 * leaves as `_ordering` changes. Epoch 0 is the source itself.
 */
export function withOrderingEpoch(source: ChangeSource, epoch: number): ChangeSource {
  const prefix = epochPrefix(epoch);
  return prefix === '' ? source : new EpochChangeSource(source, prefix);
}

class EpochChangeSource implements ChangeSource {
  readonly name: string;
  readonly stream: string;
  readonly relationIds?: ChangeSource['relationIds'];
  readonly typeNames?: ChangeSource['typeNames'];
  readonly facts?: ChangeSource['facts'];
  readonly visible?: ChangeSource['visible'];

  constructor(
    private readonly inner: ChangeSource,
    private readonly prefix: string,
  ) {
    this.name = inner.name;
    this.stream = inner.stream;
    if (inner.relationIds) this.relationIds = inner.relationIds.bind(inner);
    if (inner.typeNames) this.typeNames = inner.typeNames.bind(inner);
    if (inner.facts) this.facts = inner.facts.bind(inner);
    if (inner.visible) this.visible = inner.visible.bind(inner);
  }

  prerequisites: ChangeSource['prerequisites'] = () => this.inner.prerequisites();
  keyProblems: ChangeSource['keyProblems'] = (tables) => this.inner.keyProblems(tables);
  prepare: ChangeSource['prepare'] = (tables) => this.inner.prepare(tables);
  status: ChangeSource['status'] = () => this.inner.status();
  create: ChangeSource['create'] = () => this.inner.create();
  currentPosition: ChangeSource['currentPosition'] = () => this.inner.currentPosition();
  comparePositions: ChangeSource['comparePositions'] = (a, b) => this.inner.comparePositions(a, b);
  confirmedPast: ChangeSource['confirmedPast'] = (confirmed, acknowledged, legacy) => this.inner.confirmedPast(confirmed, acknowledged, legacy);
  drop: ChangeSource['drop'] = (options) => this.inner.drop(options);
  close: ChangeSource['close'] = () => this.inner.close();

  snapshotOrdering(start: string): string {
    return this.prefix + this.inner.snapshotOrdering(start);
  }

  open: ChangeSource['open'] = (relations, onEvent, onError, options) => this.inner.open(relations, (e) => onEvent(this.stamp(e)), onError, options);

  private stamp(e: ChangeStreamEvent): ChangeStreamEvent {
    switch (e.kind) {
      case 'transaction':
      case 'changes':
        return { ...e, changes: e.changes.map((c) => ({ ...c, ordering: this.prefix + c.ordering })) };
      case 'relation':
        return { ...e, from: e.from === null ? null : this.prefix + e.from };
      case 'idle':
      case 'truncate':
      case 'resnapshot':
        return e;
      default:
        // A new kind of event may carry an ordering: it must be stamped here, not let through unstamped.
        return e satisfies never;
    }
  }
}
