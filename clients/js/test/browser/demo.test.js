// The demo page in a real browser: Debian's chromium (headless, driven by
// playwright-core) against a local presenced with the embedded store and
// the demo on. On failure, screenshots of every page (and the node's log)
// go to clients/js/test-artifacts/.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPresenced } from '../helpers/presenced.js';

const artifacts = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test-artifacts');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** @type {Awaited<ReturnType<typeof startPresenced>>} */
let node;
/** @type {import('playwright-core').BrowserContext} */
let browser;
/** @type {string} */
let profile;
/** @type {Map<import('playwright-core').Page, string[]>} page → its console */
const pages = new Map();

beforeAll(async () => {
  node = await startPresenced({ PRESENCE_DEMO: 'on', PRESENCE_LOG_LEVEL: 'info' });
  profile = await mkdtemp(path.join(os.tmpdir(), 'presence-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await node?.stop();
  if (profile) await rm(profile, { recursive: true, force: true });
});

/**
 * Opens the demo page as `name` in `room`, joined at once.
 * @param {string} name
 * @param {string} room
 */
async function openDemo(name, room) {
  const page = await browser.newPage();
  const log = [];
  pages.set(page, log);
  page.on('console', (m) => log.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  page.on('close', () => pages.delete(page));
  await page.goto(`${node.url}/demo/?name=${encodeURIComponent(name)}&room=${encodeURIComponent(room)}&grace=1000`);
  await page.locator('body[data-status="connected"]').waitFor({ timeout: 10_000 });
  return page;
}

/**
 * The avatar of `userId` in page's face pile.
 * @param {import('playwright-core').Page} page
 * @param {string} userId
 * @param {boolean} online
 */
const avatar = (page, userId, online) => page.locator(`#pile [data-user-id="${userId}"][data-online="${online}"]`);

/**
 * Sets the page's visibility as a browser would when its tab is hidden or
 * shown (headless pages are always visible).
 * @param {import('playwright-core').Page} page
 * @param {'hidden' | 'visible'} state
 */
async function setVisibility(page, state) {
  await page.evaluate((s) => {
    Object.defineProperty(document, 'visibilityState', { value: s, configurable: true });
    Object.defineProperty(document, 'hidden', { value: s === 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

/** @param {string} testName */
async function saveArtifacts(testName) {
  const dir = path.join(artifacts, testName.replace(/[^a-z0-9]+/gi, '-').toLowerCase());
  await mkdir(dir, { recursive: true });
  let i = 0;
  for (const [page, log] of pages) {
    i++;
    await page.screenshot({ path: path.join(dir, `page-${i}.png`), fullPage: true }).catch(() => {});
    await writeFile(path.join(dir, `page-${i}-console.txt`), log.join('\n')).catch(() => {});
  }
  await writeFile(path.join(dir, 'presenced.log'), node.log()).catch(() => {});
  console.error(`browser test failed: screenshots and logs in ${dir}`);
}

describe('the demo page in chromium', () => {
  it('/ leads to the demo', async ({ onTestFailed }) => {
    onTestFailed(() => saveArtifacts('redirect'));
    const page = await browser.newPage();
    pages.set(page, []);
    page.on('close', () => pages.delete(page));
    try {
      await page.goto(`${node.url}/`);
      expect(new URL(page.url()).pathname).toBe('/demo/');
      await expect(page.title()).resolves.toBe('presence demo');
    } finally {
      await page.close();
    }
  });

  it('two pages in one room see each other; a closed page goes offline within 2 s', async ({ onTestFailed }) => {
    onTestFailed(() => saveArtifacts('two-pages'));
    const ada = await openDemo('ada', 'room-1');
    const bob = await openDemo('bob', 'room-1');
    await avatar(ada, 'bob', true).waitFor({ timeout: 5000 });
    await avatar(bob, 'ada', true).waitFor({ timeout: 5000 });
    // Own user first in each face pile.
    await expect(ada.locator('#pile [data-user-id]').first().getAttribute('data-user-id')).resolves.toBe('ada');
    await expect(bob.locator('#pile [data-user-id]').first().getAttribute('data-user-id')).resolves.toBe('bob');
    await expect(bob.locator('#members li[data-user-id="bob"]').textContent()).resolves.toContain('(you)');

    const t0 = Date.now();
    await bob.close();
    await avatar(ada, 'bob', false).waitFor({ timeout: 2000 });
    const took = Date.now() - t0;
    expect(took).toBeLessThan(2000);
    await expect(ada.locator('#members li[data-user-id="bob"] .seen').textContent()).resolves.toMatch(/^last seen/);
    await ada.close();
  });

  it('a hidden page goes offline after the grace period and comes back when shown', async ({ onTestFailed }) => {
    onTestFailed(() => saveArtifacts('hidden-page'));
    const ada = await openDemo('ada', 'room-2');
    const cy = await openDemo('cy', 'room-2');
    await avatar(ada, 'cy', true).waitFor({ timeout: 5000 });

    const t0 = Date.now();
    await setVisibility(cy, 'hidden');
    // Within the grace period (1 s) nothing changes.
    await new Promise((r) => setTimeout(r, 600));
    await expect(avatar(ada, 'cy', true).count()).resolves.toBe(1);
    await avatar(ada, 'cy', false).waitFor({ timeout: 3000 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    await expect(cy.locator('body').getAttribute('data-status')).resolves.toBe('suspended');

    await setVisibility(cy, 'visible');
    await avatar(ada, 'cy', true).waitFor({ timeout: 3000 });
    await cy.locator('body[data-status="connected"]').waitFor({ timeout: 3000 });
    // Still one session of cy (the same sessionId joined again).
    const sessions = await ada.evaluate(() => window.presenceClient.getMembers('room-2').find((m) => m.userId === 'cy').sessions);
    expect(sessions).toBe(1);
    await cy.close();
    await ada.close();
  });
});
