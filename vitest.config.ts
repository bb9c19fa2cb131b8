import { defineConfig } from 'vitest/config';

// One config for the whole workspace. Packages resolve each other through the
// "plugvisor-source" export condition, so tests run against src/ with no build step;
// tests that spawn the CLI use the built dist/ (the test script builds first).
const conditions = ['plugvisor-source', 'import', 'module', 'node', 'default'];

export default defineConfig({
  // Vitest runs tests in Vite's SSR environment, whose resolver takes its own conditions.
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['plugvisor-source'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
