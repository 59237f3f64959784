// Lint rules, and the layering of the code as rules (docs: README, Development).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

/** Import patterns a layer may not use: dependencies point main/cli -> http -> queue -> core <- sources, destinations. */
const FRAMEWORKS = [
  'bullmq',
  'ioredis',
  'pg',
  'pg-*',
  'mysql2',
  'mysql2/*',
  '@vlasky/*',
  'undici',
  'express',
  '@bull-board/*',
  'pino',
  'prom-client',
  '@duckdb/*',
  'zod',
  'yaml',
  'commander',
];
const layer = (files, patterns, message) => ({
  files,
  // Tests may use the shared test helpers.
  ignores: ['**/*.test.ts'],
  rules: { 'no-restricted-imports': ['error', { patterns: [{ group: patterns, message }] }] },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: false } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'no-console': 'error',
    },
  },
  {
    files: ['test/**', 'bench/**', 'demo/**', 'scripts/**', '**/*.test.ts'],
    // Harnesses set results in try blocks and report them after cleanup.
    rules: { 'no-console': 'off', 'no-useless-assignment': 'off' },
  },
  layer(['src/core/**/*.ts'], ['../*', ...FRAMEWORKS, '!./*'], 'src/core imports only src/core and the standard library'),
  layer(
    ['src/sources/**/*.ts', 'src/destinations/**/*.ts'],
    ['../queue/*', '../http/*', '../cli.js', '../main.js'],
    'sources and destinations never import the queue, http or CLI layers',
  ),
  layer(
    ['src/queue/**/*.ts'],
    ['../sources/*', '../destinations/*', '../http/*', '../cli.js'],
    'queue/ drives adapters through the ports in core/ports.ts; only main.ts constructs them',
  ),
  layer(['src/http/**/*.ts'], ['../sources/*', '../destinations/*', '../cli.js'], 'http/ never imports adapters or the CLI'),
  prettier,
);
