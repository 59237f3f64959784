import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/chaos/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests share one Postgres and one Redis; files isolate themselves by schema and prefix,
    // two at a time keeps a 2-core machine responsive.
    maxWorkers: 2,
    // A database per worker: see test/helpers/global-setup.ts (MAX_WORKERS there matches maxWorkers).
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
