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
  },
});
