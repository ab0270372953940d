// Starts a real presenced (embedded store) on a free loopback port for a
// test, and stops it by its pid.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository's root (clients/js/test/helpers → ../../../..). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Builds presenced (unless PRESENCED_BIN names a built one) into a
 * temporary folder. The build is cached by Go; a warm build takes a second.
 */
export async function buildPresenced() {
  if (process.env.PRESENCED_BIN) return { bin: process.env.PRESENCED_BIN, dir: null };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'presence-js-'));
  const bin = path.join(dir, 'presenced');
  await run('go', ['build', '-o', bin, './cmd/presenced'], { cwd: repoRoot, timeout: 300_000 });
  return { bin, dir };
}

/**
 * Starts presenced with the embedded store (no Redis URL) and waits until it
 * is ready. Returns its base URL, its log, and stop().
 * @param {Record<string, string>} [env] more settings (PRESENCE_*)
 */
export async function startPresenced(env = {}) {
  const { bin, dir } = await buildPresenced();
  const port = await freePort();
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PRESENCE_')));
  const proc = spawn(bin, [], {
    env: { ...clean, PRESENCE_ADDR: `127.0.0.1:${port}`, PRESENCE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout.on('data', (b) => (log += b));
  proc.stderr.on('data', (b) => (log += b));
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`presenced exited (${proc.exitCode}):\n${log}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`presenced did not become ready:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    pid: /** @type {number} */ (proc.pid),
    log: () => log,
    async stop() {
      if (proc.exitCode === null) {
        process.kill(/** @type {number} */ (proc.pid), 'SIGTERM');
        const t = setTimeout(() => proc.exitCode === null && process.kill(/** @type {number} */ (proc.pid), 'SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Waits until fn() returns a truthy value (or throws no more), polling.
 * @template T
 * @param {() => T | Promise<T>} fn
 * @param {number} [timeout]
 * @param {string} [what]
 * @returns {Promise<T>}
 */
export async function waitFor(fn, timeout = 5000, what = 'condition') {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
