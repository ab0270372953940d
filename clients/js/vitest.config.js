import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.js'],
    exclude: ['test/browser/**', 'node_modules/**'],
    testTimeout: 20000,
    hookTimeout: 60000,
  },
});
