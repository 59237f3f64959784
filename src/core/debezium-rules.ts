import { AppError } from './errors.js';
import { compileMask, type ValueMask } from './masks.js';
import type { DebeziumChange } from './debezium.js';
import type { ColumnSelection, Mask } from './rules.js';

/**
 * What of a Debezium table's rows leaves: its `columns` and `masks`, applied to each change as it is taken, before
 * anything of it is stored in Redis. Debezium tables have no catalog to resolve names against, so a name matches the
 * event's column of that name in any case, or exactly when written in double quotes (`"Email"`).
 */

export interface DebeziumRuleInput {
  columns?: ColumnSelection | undefined;
  masks?: Record<string, Mask> | undefined;
}

/** A column name as written: the name it matches, and whether case counts. */
interface WrittenName {
  text: string;
  exact: boolean;
}

function written(name: string): WrittenName {
  return name.length > 2 && name.startsWith('"') && name.endsWith('"')
    ? { text: name.slice(1, -1).replace(/""/g, '"'), exact: true }
    : { text: name, exact: false };
}

const matches = (w: WrittenName, column: string): boolean => (w.exact ? w.text === column : w.text.toLowerCase() === column.toLowerCase());

export class DebeziumRules {
  private readonly include: WrittenName[] | undefined;
  private readonly exclude: WrittenName[];
  private readonly masks: Array<{ name: WrittenName; mask: Mask; apply: ValueMask }>;
  /** Per column name seen: whether it leaves, and its mask (names repeat in every event of a table). */
  private readonly decided = new Map<string, { leaves: boolean; mask: { kind: Mask['kind']; apply: ValueMask } | null }>();

  constructor(input: DebeziumRuleInput, hashKey: Buffer | null) {
    this.include = input.columns?.include?.map(written);
    this.exclude = (input.columns?.exclude ?? []).map(written);
    this.masks = Object.entries(input.masks ?? {}).map(([name, mask]) => ({ name: written(name), mask, apply: compileMask(mask, hashKey) }));
  }

  /** Null when the table has no rules: its changes are stored as they arrive. */
  static of(input: DebeziumRuleInput, hashKey: Buffer | null): DebeziumRules | null {
    return hasDebeziumRules(input) ? new DebeziumRules(input, hashKey) : null;
  }

  private decide(column: string) {
    let d = this.decided.get(column);
    if (!d) {
      const leaves = this.include ? this.include.some((w) => matches(w, column)) : !this.exclude.some((w) => matches(w, column));
      const m = this.masks.find((x) => matches(x.name, column));
      d = { leaves, mask: m ? { kind: m.mask.kind, apply: m.apply } : null };
      this.decided.set(column, d);
    }
    return d;
  }

  /**
   * The change as it may leave: columns that do not leave dropped (from the row, the key and `unavailable`), masked
   * values replaced. `primaryKey`: the configured key, else the event key's columns; a key column that does not
   * leave, or is masked other than by hash (which keeps keys distinct and deterministic), fails the event.
   */
  apply(change: DebeziumChange, primaryKey: readonly string[] | undefined, where: string): DebeziumChange {
    const pk = primaryKey ?? (change.key ? [...change.key.keys()] : []);
    for (const c of pk) {
      const d = this.decide(c);
      if (!d.leaves) {
        throw new AppError('EVENT_INVALID', `${where}: primary-key column ${c} of ${change.table} is left out by columns; key columns must leave`, {
          details: { field: c },
        });
      }
      if (d.mask && d.mask.kind !== 'hash') {
        throw new AppError('EVENT_INVALID', `${where}: primary-key column ${c} of ${change.table} can only be masked with hash`, {
          details: { field: c },
        });
      }
    }
    const rewrite = (values: Map<string, string>): Map<string, string> => {
      const out = new Map<string, string>();
      for (const [name, v] of values) {
        const d = this.decide(name);
        if (d.leaves) out.set(name, d.mask ? d.mask.apply(v) : v);
      }
      return out;
    };
    return {
      ...change,
      columns: rewrite(change.columns),
      unavailable: change.unavailable.filter((c) => this.decide(c).leaves),
      key: change.key ? rewrite(change.key) : null,
    };
  }
}

/** Whether a table sets columns or masks: without, its changes are stored and sent as they arrive. */
export function hasDebeziumRules(input: DebeziumRuleInput): boolean {
  return input.columns !== undefined || Object.keys(input.masks ?? {}).length > 0;
}
