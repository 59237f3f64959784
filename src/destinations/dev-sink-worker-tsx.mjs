// The request worker's entry when the dev sink runs from its TypeScript sources (development, tests, benchmarks):
// a worker thread does not inherit the tsx loader, so it registers it before loading the worker's module.
import { register } from 'tsx/esm/api';

register();
await import('./dev-sink-worker.ts');
