import { allTables, tableSpec, type Config } from './config.js';
import { buildManifest, type Manifest, type ManifestTableInput } from './core/manifest.js';
import type { Source } from './core/ports.js';

/** `pushsync manifest`: every configured table opened against its source now, described for a reviewer. */
export async function manifestOf(config: Config, sources: Map<string, Source>): Promise<Manifest> {
  const inputs: ManifestTableInput[] = [];
  // Debezium tables arrive as events: there is no catalog to read them from.
  for (const t of allTables(config)) {
    if (t.mode === 'debezium') continue;
    const reader = await sources.get(t.source)!.table(tableSpec(t));
    inputs.push({
      source: t.source,
      table: t.name,
      target: t.target,
      mode: t.mode,
      shape: reader.shape,
      query: t.query,
      where: t.where,
      onFilteredOut: t.onFilteredOut,
      transform: t.transform,
      softDelete: t.softDelete,
    });
  }
  return buildManifest(inputs);
}
