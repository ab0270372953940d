// The client against a real presenced (embedded store, auth off), built
// and started by the test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PresenceClient } from '../src/index.js';
import { startPresenced, waitFor } from './helpers/presenced.js';

/** @type {Awaited<ReturnType<typeof startPresenced>>} */
let node;
/** @type {PresenceClient[]} */
const clients = [];

beforeAll(async () => {
  node = await startPresenced();
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await node?.stop();
});

/** @param {string} userId @param {any} [o] */
function client(userId, o = {}) {
  const c = new PresenceClient({ url: node.url, userId, name: userId.toUpperCase(), WebSocket, lifecycle: false, ...o });
  clients.push(c);
  return c;
}

/** @param {PresenceClient} c @param {string} room */
const ids = (c, room) => (c.getMembers(room) ?? []).map((m) => `${m.userId}:${m.online ? 'on' : 'off'}`).join(',');
/** the same, sorted: for members that came online at about the same time */
/** @param {PresenceClient} c @param {string} room */
const set = (c, room) => (c.getMembers(room) ?? []).map((m) => `${m.userId}:${m.online ? 'on' : 'off'}`).sort().join(',');

describe('against presenced', () => {
  it('two clients see each other, updates, a silent resume and a leave', async () => {
    const ada = client('ada');
    const bob = client('bob');
    const bobSaw = [];
    bob.subscribe('lobby', (m) => bobSaw.push(m));
    ada.join('lobby', { data: { status: 'reading' } });
    await waitFor(() => ids(ada, 'lobby') === 'ada:on', 5000, 'ada joined');
    bob.join('lobby');
    await waitFor(() => ids(ada, 'lobby') === 'ada:on,bob:on', 5000, 'ada sees bob');
    await waitFor(() => ids(bob, 'lobby') === 'ada:on,bob:on', 5000, 'bob sees ada');
    expect(bob.getMembers('lobby')[0]).toMatchObject({ userId: 'ada', name: 'ADA', data: { status: 'reading' } });

    ada.update('lobby', { status: 'typing' });
    await waitFor(() => bob.getMembers('lobby')?.[0]?.data?.status === 'typing', 5000, 'bob sees the update');

    // Ada's connection drops without a close frame: she reconnects and
    // resumes her session; Bob sees no leave and no join.
    const seenBefore = bobSaw.length;
    const sessionBefore = ada.getRoom('lobby').sessionId;
    /** @type {any} */ (ada)._ws.terminate();
    await waitFor(() => ada.status === 'reconnecting', 2000, 'ada reconnecting');
    await waitFor(() => ada.status === 'connected' && ada.getRoom('lobby').joined, 5000, 'ada resumed');
    expect(ada.getRoom('lobby').sessionId).toBe(sessionBefore);
    await new Promise((r) => setTimeout(r, 300));
    expect(bobSaw.slice(seenBefore).some((m) => m?.find((x) => x.userId === 'ada' && !x.online))).toBe(false);
    const list = await bob.api.listRoom('lobby');
    expect(list.members.find((m) => m.userId === 'ada')).toMatchObject({ online: true, sessions: 1 });

    // Bob closes: Ada sees him offline at once.
    const t0 = Date.now();
    await bob.close();
    await waitFor(() => ids(ada, 'lobby') === 'ada:on,bob:off', 2000, 'ada sees bob leave');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(ada.getMembers('lobby')[1].lastDisconnected).toBeGreaterThan(0);
  });

  it('watchUsers follows a user across rooms (friends online)', async () => {
    const w = client('watcher');
    const seen = [];
    w.watchUsers(['erin'], (users) => seen.push(users[0]));
    await waitFor(() => seen.length === 1 && seen[0].online === false, 5000, 'erin offline at first');
    const erin = client('erin');
    erin.join('room-a');
    erin.join('room-b');
    await waitFor(() => w.getUsers(['erin'])[0]?.online === true, 5000, 'erin online');
    await waitFor(async () => (await w.api.userPresence('erin')).rooms === 2, 5000, 'erin in 2 rooms');
    await erin.close();
    await waitFor(() => w.getUsers(['erin'])[0]?.online === false, 5000, 'erin offline');
    expect(w.getUsers(['erin'])[0].lastDisconnected).toBeGreaterThan(0);
    expect(seen.map((x) => x.online)).toEqual([false, true, false]);
  });

  it('the HTTP fallback heartbeats and polls with ETags', async () => {
    const statuses = [];
    const f = /** @type {typeof fetch} */ (
      async (url, init) => {
        const res = await fetch(url, init);
        if (String(url).includes('/v1/list')) statuses.push(res.status);
        return res;
      }
    );
    const cy = client('cy', { WebSocket: null, fetch: f, pollInterval: 100, interval: 1000 });
    const dee = client('dee');
    dee.join('http-room');
    cy.join('http-room');
    expect(cy.transport).toBe('http');
    await waitFor(() => set(cy, 'http-room') === 'cy:on,dee:on', 5000, 'cy sees both');
    await waitFor(() => set(dee, 'http-room') === 'cy:on,dee:on', 5000, 'dee sees cy');
    await waitFor(() => statuses.includes(304), 3000, 'a 304');
    // Heartbeats keep cy online past its timeout (interval 1 s × 2.5).
    await new Promise((r) => setTimeout(r, 3000));
    expect(set(dee, 'http-room')).toBe('cy:on,dee:on');
    dee.leave('http-room');
    await waitFor(() => ids(cy, 'http-room') === 'cy:on,dee:off', 3000, 'cy polls dee leaving');
    await cy.close();
    await waitFor(async () => (await dee.api.listRoom('http-room')).members.find((m) => m.userId === 'cy')?.online === false, 3000, 'cy disconnected');
  });

  it('a session ended by sign-out elsewhere is not rejoined', async () => {
    const eve = client('eve');
    const fay = client('fay');
    const errors = [];
    // (A node learns that a session of its socket was ended elsewhere at the
    // session's next keep-alive: once per interval.)
    const eve2 = client('eve', { interval: 1000, onError: (/** @type {any} */ e) => errors.push(e) });
    fay.join('signout-room');
    eve.join('signout-room');
    eve2.join('other-room');
    await waitFor(() => set(fay, 'signout-room') === 'eve:on,fay:on', 5000, 'fay sees eve');
    await waitFor(() => eve2.getRoom('other-room')?.joined, 5000, 'eve2 joined');

    // Eve signs out in one tab: every session of hers ends, in every room.
    await expect(eve.signOut()).resolves.toEqual({ rooms: 2 });
    await waitFor(() => set(fay, 'signout-room') === 'eve:off,fay:on', 2000, 'fay sees eve go');
    await waitFor(() => eve2.getRoom('other-room')?.ended, 3000, 'the other tab told');
    expect(errors.map((e) => e.code)).toContain('ended');
    // Its socket (kept open by a watch) drops and comes back: the watch
    // is restored, the ended room is not rejoined.
    await eve2.watch(fay.getRoom('signout-room').roomToken).roomId;
    /** @type {any} */ (eve2)._ws.terminate();
    await waitFor(() => eve2.status === 'reconnecting', 2000, 'eve2 reconnecting');
    await waitFor(() => eve2.status === 'connected', 5000, 'eve2 reconnected');
    await waitFor(() => set(eve2, 'signout-room') === 'eve:off,fay:on', 2000, 'the watch restored');
    await new Promise((r) => setTimeout(r, 300));
    const rooms = await fay.api.listUser('eve');
    expect(rooms.rooms.every((r) => !r.online)).toBe(true);
  });

  it('refuses a sessionId of another user with conflict', async () => {
    const errors = [];
    const gus = client('gus');
    const hal = client('hal', { onError: (/** @type {any} */ e) => errors.push(e) });
    gus.join('conflict-room', { sessionId: 'shared-id' });
    await waitFor(() => gus.getRoom('conflict-room')?.joined, 5000, 'gus joined');
    hal.join('conflict-room', { sessionId: 'shared-id' });
    await waitFor(() => hal.getRoom('conflict-room')?.error, 5000, 'hal refused');
    expect(hal.getRoom('conflict-room').error.code).toBe('conflict');
  });
  it('reads a room page by page: every member once, in list order', async () => {
    const c = client('pager');
    let roomToken = '';
    for (let i = 0; i < 30; i++) {
      const r = await c.api.heartbeat({ roomId: 'pages', sessionId: `s${i}`, userId: `u${String((i * 7) % 30).padStart(2, '0')}` });
      roomToken = r.roomToken;
      if (i % 4 === 0) await c.api.disconnect(r.sessionToken);
    }
    const full = await c.api.list(roomToken, { limit: 1000 });
    expect(full.members).toHaveLength(30);
    expect(full.next).toBeUndefined();
    const want = full.members.map((m) => m.userId);

    const got = [];
    let pages = 0;
    for await (const page of c.api.pages(roomToken, { limit: 7 })) {
      expect(page.version).toBe(full.version);
      got.push(...page.members.map((m) => m.userId));
      pages++;
    }
    expect(pages).toBe(5);
    expect(got).toEqual(want);
    const all = await c.api.listAll(roomToken, { limit: 4 });
    expect(all.members.map((m) => m.userId)).toEqual(want);
    expect(all.version).toBe(full.version);

    const online = (await c.api.listRoom('pages', { onlineOnly: true, limit: 1000 })).members.map((m) => m.userId);
    const allOnline = await c.api.listRoomAll('pages', { onlineOnly: true, limit: 5 });
    expect(allOnline.members.map((m) => m.userId)).toEqual(online);

    // A change between two pages shows in the later page's version.
    const first = await c.api.listRoom('pages', { limit: 10 });
    await c.api.heartbeat({ roomId: 'pages', sessionId: 'late', userId: 'late' });
    const second = await c.api.listRoom('pages', { limit: 10, cursor: first.next });
    expect(second.version).not.toBe(first.version);

    await expect(c.api.list(roomToken, { cursor: 'forged' })).rejects.toMatchObject({ status: 400, code: 'invalid_argument' });
  });
});
