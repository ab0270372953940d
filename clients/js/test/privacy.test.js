import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PresenceClient } from '../src/index.js';
import { fakeFetch, fakeLifecycle, fakeWebSockets } from './fakes.js';

// The privacy options: invisible and hideLastSeen go with every room's join
// (and the first HTTP heartbeat, after setPrivacy, and with the keep-alives
// while one of them is on).

/** @param {any} [options] @param {any} [handler] */
function setup(options = {}, handler) {
  const ws = fakeWebSockets();
  const http = fakeFetch(handler ?? (() => ({ status: 204 })));
  const client = new PresenceClient({
    url: 'http://presence.test',
    userId: 'ada',
    WebSocket: ws.WebSocket,
    fetch: /** @type {any} */ (http.fetch),
    lifecycle: fakeLifecycle(),
    random: () => 1,
    ...options,
  });
  return { client, ws, http };
}

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('privacy', () => {
  it('sends invisible and hideLastSeen with the joins of every room, and setPrivacy joins again', async () => {
    const { client, ws } = setup({ invisible: true });
    client.join('lobby');
    client.join('kitchen');
    await tick();
    ws.last.open();
    const joins = ws.last.sentOf('join');
    expect(joins.map((j) => [j.roomId, j.invisible, j.hideLastSeen])).toEqual([
      ['lobby', true, undefined],
      ['kitchen', true, undefined],
    ]);
    expect(client.privacy).toEqual({ invisible: true, hideLastSeen: undefined });
    client.setPrivacy({ invisible: false, hideLastSeen: true });
    const again = ws.last.sentOf('join').slice(2);
    expect(again.map((j) => [j.roomId, j.invisible, j.hideLastSeen])).toEqual([
      ['lobby', false, true],
      ['kitchen', false, true],
    ]);
    // The same sessions: the server keeps them, only the flags change.
    expect(again.map((j) => j.sessionId)).toEqual(joins.map((j) => j.sessionId));
    expect(() => client.setPrivacy({ invisible: 'yes' })).toThrow(TypeError);
  });

  it('sends no flags when none is set', async () => {
    const { client, ws } = setup();
    client.join('lobby');
    await tick();
    ws.last.open();
    const j = ws.last.sentOf('join')[0];
    expect('invisible' in j || 'hideLastSeen' in j).toBe(false);
  });

  it('over HTTP: the flags go with the first heartbeat, after setPrivacy, and with keep-alives while one is on', async () => {
    const handler = (/** @type {any} */ req) => {
      if (req.path === '/v1/heartbeat') {
        const b = JSON.parse(req.body);
        return { status: 200, body: { roomToken: `rt-${b.roomId}`, sessionToken: `st-${b.sessionId}`, interval: b.interval } };
      }
      if (req.path === '/v1/list') return { status: 200, body: { roomId: 'lobby', version: 1, members: [] } };
      return { status: 204 };
    };
    const { client, http } = setup({ WebSocket: null, interval: 2000, invisible: true, hideLastSeen: false }, handler);
    client.join('lobby');
    await tick();
    const beats = () => http.calls.filter((c) => c.path === '/v1/heartbeat').map((c) => JSON.parse(c.body));
    expect(beats()[0]).toMatchObject({ invisible: true, hideLastSeen: false });
    await tick(2000);
    expect(beats()).toHaveLength(2);
    // Invisible: every keep-alive says so (a member Redis lost comes back
    // invisible).
    expect(beats()[1]).toMatchObject({ invisible: true, hideLastSeen: false });
    client.setPrivacy({ invisible: false });
    await tick();
    expect(beats()[2]).toMatchObject({ invisible: false, hideLastSeen: false });
    await tick(2000);
    expect('invisible' in beats()[3]).toBe(false);
  });
});
