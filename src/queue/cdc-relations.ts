import type { TableConfig } from '../config.js';
import type { RelationKeys } from '../core/changes.js';
import type { ChangeSource, ChangeStreamEvent, TableReader } from '../core/ports.js';
import { diffShapes, type RelationShape } from '../core/table-shape.js';
import type { PipelineContext } from './context.js';
import { requestSnapshot } from './cdc-snapshots.js';
import { startGeneration, tableGeneration } from './generations.js';

/**
 * What a CDC reader knows of each watched relation's identity and columns, kept in the source's CDC state hash so
 * that a change made while pushsync was stopped is seen when it starts again:
 * - `relid:<table>`: the relation's identity (oid). A table found under its name with another identity was dropped
 *   and created again: it is a new table. Changes of the old one are never applied to it (the collector drops them
 *   by identity) and it is snapshotted again while the stream flows.
 * - `relshape:<table>`: its columns as the stream last described them (relation messages), to announce what changed
 *   with the `_ordering` of the first change that has the new shape.
 */
export interface TrackedRelation extends RelationKeys {
  table: TableConfig;
  reader: TableReader;
}

/** Announces what changed in the table's shape, from the `_ordering` given (null: not known); `recreated`: a new table. */
export type Announce = (table: TableConfig, appliesFrom: string | null, recreated?: boolean) => Promise<void>;

interface StoredShape {
  /** The columns exactly as the stream stated them: compared first, so an unchanged relation costs no query. */
  stated: string;
  shape: RelationShape;
}

export class RelationTracker {
  constructor(
    private readonly ctx: PipelineContext,
    private readonly cdc: ChangeSource,
    private readonly stateKey: string,
    /** By `schema.relname`; `id` is set here and read by the change collector. */
    private readonly relations: ReadonlyMap<string, TrackedRelation>,
    private readonly announce: Announce,
    /** The `_ordering` of a snapshot started at a stream position. */
    private readonly snapshotOrdering: (position: string) => string,
    private readonly log: PipelineContext['logger'],
  ) {}

  /**
   * Resolves each watched name's identity now and compares it with the one recorded. A table created again under
   * its name is captured again (publication), announced, and snapshotted again from `position` on. Returns the
   * re-created tables.
   */
  async checkIdentities(position: string | null): Promise<TableConfig[]> {
    if (!this.cdc.relationIds) return [];
    const current = await this.cdc.relationIds([...this.relations.values()].map((r) => r.reader.shape));
    const recreated: TableConfig[] = [];
    for (const [name, r] of this.relations) {
      const id = current.get(name);
      // A table missing now (dropped, not yet created again) keeps its old identity until it is back.
      if (id === undefined || id === r.id) continue;
      const field = `relid:${r.table.name}`;
      const recorded = r.id ?? (await this.ctx.redis.hget(this.stateKey, field)) ?? undefined;
      const renewed = recorded !== undefined && recorded !== id;
      const ordering = position === null ? null : this.snapshotOrdering(position);
      const generation = renewed
        ? await startGeneration(this.ctx, r.table, id, recorded, ordering)
        : await tableGeneration(this.ctx, r.table, id, recorded);
      // Together, with no wait between: the collector tags each change with the generation of the identity it let in.
      r.id = id;
      r.generation = generation;
      if (renewed) {
        recreated.push(r.table);
        await this.cdc.prepare([r.reader.shape]);
        // Before the new identity is recorded: a crash in between finds the table re-created again, and asks again.
        await requestSnapshot(this.ctx, this.stateKey, r.table, 'table re-created');
        await this.ctx.redis.hdel(this.stateKey, `relshape:${r.table.name}`);
        await this.announce(r.table, ordering, true);
        this.log.warn(
          { table: r.table.name, from: recorded, to: id },
          `${r.table.source}.${r.table.name} was dropped and created again: changes of the dropped table are not applied to it; snapshotting it again while the stream flows`,
        );
      }
      await this.ctx.redis.hset(this.stateKey, field, id);
    }
    return recreated;
  }

  /** A relation message: announces column changes against the columns the stream stated before. */
  async onRelation(e: Extract<ChangeStreamEvent, { kind: 'relation' }>): Promise<void> {
    const r = this.relations.get(e.relation);
    if (!r) return;
    // Another identity: a dropped table's description in the backlog, or a new table not yet noticed by name.
    if (r.id !== undefined && e.id !== r.id) {
      await this.checkIdentities(null);
      if (e.id !== r.id) return;
    }
    const field = `relshape:${r.table.name}`;
    const stated = JSON.stringify(e.columns);
    const text = await this.ctx.redis.hget(this.stateKey, field);
    const before = text ? (JSON.parse(text) as StoredShape) : null;
    if (before?.stated === stated) return;
    const names = this.cdc.typeNames ? await this.cdc.typeNames(e.columns.map((c) => c.type)) : new Map<string, string>();
    const shape: RelationShape = { identity: e.id, columns: e.columns.map((c) => ({ name: c.name, type: names.get(c.type) ?? c.type })) };
    if (before) {
      const changes = diffShapes(before.shape, shape);
      // ALTER … TYPE rewrites every row, and with USING may change each value, without a single change in the
      // stream: only reading the table again brings the values downstream.
      if (changes.some((c) => c.kind === 'type_changed')) await requestSnapshot(this.ctx, this.stateKey, r.table, 'column type changed');
      if (changes.length > 0) await this.announce(r.table, e.from);
    }
    const stored: StoredShape = { stated, shape };
    await this.ctx.redis.hset(this.stateKey, field, JSON.stringify(stored));
  }
}
