import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

/** deploy/kubernetes/ as the API server would read it (parsed, not applied: no cluster in tests). */
const DIR = new URL('../deploy/kubernetes/', import.meta.url);
interface Manifest {
  kind: string;
  metadata: { name: string };
  spec?: Record<string, unknown>;
}
const manifests: Manifest[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(new URL(f, DIR), 'utf8')).map((d) => d.toJS() as Manifest));

describe('deploy/kubernetes', () => {
  const deployments = manifests.filter((m) => m.kind === 'Deployment');

  it('has a Deployment per role group, a ConfigMap, a Secret, a PodDisruptionBudget and an autoscaling example', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'Deployment',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'Secret',
      'Service',
    ]);
    const roles = deployments.map((d) => {
      const args = (d.spec as { template: { spec: { containers: Array<{ args: string[] }> } } }).template.spec.containers[0]!.args;
      return args.filter((_, i) => args[i - 1] === '--role').sort();
    });
    expect(roles.sort()).toEqual([
      ['extract', 'push'],
      ['scheduler', 'web'],
    ]);
  });

  it('probes /healthz and /readyz, and gives SIGTERM more time than shutdown.timeout', () => {
    const config = manifests.find((m) => m.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    const timeout = Number(/timeout: (\d+)s/.exec(config.data['pushsync.yaml']!)![1]);
    for (const d of deployments) {
      const pod = (
        d.spec as { template: { spec: { terminationGracePeriodSeconds: number; containers: Array<Record<string, { httpGet: { path: string } }>> } } }
      ).template.spec;
      expect(pod.containers[0]!.livenessProbe!.httpGet.path).toBe('/healthz');
      expect(pod.containers[0]!.readinessProbe!.httpGet.path).toBe('/readyz');
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(timeout);
    }
  });

  it('selects the workers in the disruption budget and the autoscaler, and ships no credential', () => {
    const workers = deployments.find((d) => d.metadata.name === 'pushsync-workers')!;
    const labels = (workers.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
    const pdb = manifests.find((m) => m.kind === 'PodDisruptionBudget')!;
    expect(labels).toMatchObject((pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels);
    expect((manifests.find((m) => m.kind === 'HorizontalPodAutoscaler')!.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name).toBe(
      'pushsync-workers',
    );
    const secret = manifests.find((m) => m.kind === 'Secret') as unknown as { stringData: Record<string, string> };
    for (const value of Object.values(secret.stringData)) expect(value).toBe('');
  });
});
