// The browser test: Debian's chromium, driven by playwright-core, against
// a local presenced serving the demo page. `npm run test:browser`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.js'],
    testTimeout: 30000,
    hookTimeout: 120000,
    fileParallelism: false,
  },
});
