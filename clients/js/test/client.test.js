import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PresenceClient, ownFirst, lastSeen, newSessionId, appStateLifecycle, browserLifecycle } from '../src/index.js';
import { fakeFetch, fakeLifecycle, fakeWebSockets, member } from './fakes.js';

const URL_ = 'http://presence.test';

/** @param {any} [o] */
function setup(o = {}) {
  const ws = fakeWebSockets();
  const life = fakeLifecycle();
  const errors = [];
  const http = fakeFetch(o.http ?? (() => ({ status: 204 })));
  const beacons = [];
  const client = new PresenceClient({
    url: URL_,
    userId: 'ada',
    WebSocket: ws.WebSocket,
    fetch: /** @type {any} */ (http.fetch),
    lifecycle: life,
    random: () => 1,
    sendBeacon: (url, body) => {
      beacons.push({ url, body });
      return true;
    },
    onError: (e) => errors.push(e),
    ...o.options,
  });
  return { client, ws, life, errors, http, beacons };
}

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('PresenceClient over WebSocket', () => {
  it('opens nothing until a room is joined, then joins on one socket', async () => {
    const { client, ws } = setup();
    await tick(100);
    expect(ws.sockets).toHaveLength(0);
    expect(client.status).toBe('idle');

    const a = client.join('lobby', { name: 'Ada', data: { x: 1 } });
    const b = client.join('kitchen');
    await tick();
    expect(ws.sockets).toHaveLength(1);
    expect(ws.last.url).toBe('ws://presence.test/v1/ws');
    expect(client.status).toBe('connecting');
    ws.last.open();
    expect(client.status).toBe('connected');
    const joins = ws.last.sentOf('join');
    expect(joins.map((j) => j.roomId)).toEqual(['lobby', 'kitchen']);
    expect(joins[0]).toMatchObject({ sessionId: a.sessionId, userId: 'ada', name: 'Ada', data: { x: 1 }, interval: 10000 });
    expect(a.sessionId).not.toBe(b.sessionId);
    expect(new Set(joins.map((j) => j.id)).size).toBe(2);
  });

  it('sends the token as access_token and decodes the user from it', async () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'u-42' })).toString('base64url');
    const { client, ws } = setup({ options: { userId: undefined, getToken: async () => `h.${payload}.s` } });
    client.join('lobby');
    await tick();
    expect(ws.last.url).toBe(`ws://presence.test/v1/ws?access_token=h.${payload}.s`);
    expect(client.selfId('lobby')).toBe('u-42');
    ws.last.open();
    expect(ws.last.sentOf('join')[0].userId).toBeUndefined();
  });

  it('replaces the view on joined and sync, and notifies only on change', async () => {
    const { client, ws } = setup();
    const calls = [];
    client.subscribe('lobby', (m) => calls.push(m));
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada'), member('bob')], 5);
    expect(calls).toHaveLength(1);
    expect(calls[0].map((m) => m.userId)).toEqual(['ada', 'bob']);
    const first = client.getMembers('lobby');
    expect(client.getMembers('lobby')).toBe(first); // stable identity

    // The same state again (a sync after a reconnect of pub/sub): no call.
    ws.last.receive({ type: 'sync', roomId: 'lobby', version: 6, members: [member('ada'), member('bob')] });
    expect(calls).toHaveLength(1);
    expect(client.getMembers('lobby')).toBe(first);
    expect(client.getRoom('lobby').version).toBe(6);

    // A sync with another state replaces everything.
    ws.last.receive({ type: 'sync', roomId: 'lobby', version: 9, members: [member('cy')] });
    expect(calls).toHaveLength(2);
    expect(client.getMembers('lobby').map((m) => m.userId)).toEqual(['cy']);
    expect(Object.isFrozen(client.getMembers('lobby'))).toBe(true);
  });

  it('applies presence events in version order, each once', async () => {
    const { client, ws } = setup();
    const calls = [];
    client.subscribe('lobby', (m) => calls.push(m.map((x) => `${x.userId}:${x.online ? 'on' : 'off'}`)));
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')], 1);

    const bobJoin = { type: 'presence', roomId: 'lobby', version: 2, event: 'join', member: member('bob') };
    const cyJoin = { type: 'presence', roomId: 'lobby', version: 3, event: 'join', member: member('cy') };
    const bobLeave = {
      type: 'presence',
      roomId: 'lobby',
      version: 4,
      event: 'leave',
      member: member('bob', { online: false, lastDisconnected: 1000, sessions: 0 }),
    };
    ws.last.receive(cyJoin); // ahead: kept until version 2 comes
    ws.last.receive(bobLeave);
    expect(calls).toHaveLength(1);
    ws.last.receive(bobJoin);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual(['ada:on', 'cy:on', 'bob:off']);
    expect(client.getRoom('lobby').version).toBe(4);
    // Old and repeated versions change nothing.
    ws.last.receive(bobJoin);
    ws.last.receive({ ...cyJoin, event: 'leave', member: member('cy', { online: false }) });
    expect(calls).toHaveLength(2);
    // An update that changes nothing visible calls nobody.
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 5, event: 'update', member: member('cy') });
    expect(calls).toHaveLength(2);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 6, event: 'update', member: member('cy', { data: { t: 1 } }) });
    expect(calls).toHaveLength(3);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 7, event: 'remove', member: member('bob') });
    expect(calls[3]).toEqual(['ada:on', 'cy:on']);
    // Back online: placed after the others online (a stable face pile).
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 8, event: 'leave', member: member('ada', { online: false, lastDisconnected: 5 }) });
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 9, event: 'join', member: member('ada') });
    expect(calls.at(-1)).toEqual(['cy:on', 'ada:on']);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 10, event: 'reset' });
    expect(calls.at(-1)).toEqual([]);
  });

  it('asks for a snapshot when a gap is not repaired by a sync', async () => {
    const { client, ws } = setup();
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')], 1);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 3, event: 'join', member: member('cy') });
    await tick(4000);
    expect(ws.last.sentOf('join')).toHaveLength(1);
    await tick(1500);
    const joins = ws.last.sentOf('join');
    expect(joins).toHaveLength(2);
    expect(joins[1].sessionId).toBe(joins[0].sessionId);
  });

  // The hold rule of both clients (pkg/client/doc.go, README: A view per room).
  describe('events ahead of the view', () => {
    /** @param {number} version @param {string} event @param {any} [m] */
    const ev = (version, event, m) => ({ type: 'presence', roomId: 'lobby', version, event, member: m });
    const ids = (/** @type {any} */ client) => client.getMembers('lobby').map((/** @type {any} */ m) => `${m.userId}:${m.online ? 'on' : 'off'}`);
    async function joined(version = 1) {
      const t = setup();
      t.client.join('lobby');
      await tick();
      t.ws.last.open();
      t.ws.last.answerJoins([member('ada')], version);
      return t;
    }

    it('holds them until the gap fills, the first of a version only', async () => {
      const { client, ws } = await joined();
      ws.last.receive(ev(3, 'join', member('cy')));
      ws.last.receive(ev(3, 'join', member('dup')));
      ws.last.receive(ev(5, 'leave', member('ada', { online: false, lastDisconnected: 7, sessions: 0 })));
      expect(client.getRoom('lobby').version).toBe(1);
      ws.last.receive(ev(2, 'join', member('bob')));
      expect(client.getRoom('lobby').version).toBe(3);
      expect(ids(client)).toEqual(['ada:on', 'bob:on', 'cy:on']);
      ws.last.receive(ev(4, 'future', member('bob', { online: false })));
      expect(client.getRoom('lobby').version).toBe(5); // an unknown kind moves the version only
      expect(ids(client)).toEqual(['bob:on', 'cy:on', 'ada:off']);
    });

    it('on a snapshot, drops the held ones at or below its version and applies the ones right after it', async () => {
      const { client, ws } = await joined();
      ws.last.receive(ev(3, 'join', member('ghost')));
      ws.last.receive(ev(5, 'join', member('eve')));
      ws.last.receive(ev(7, 'join', member('fay')));
      ws.last.receive({ type: 'sync', roomId: 'lobby', version: 4, members: [member('ada'), member('bob')] });
      expect(client.getRoom('lobby').version).toBe(5);
      expect(ids(client)).toEqual(['ada:on', 'bob:on', 'eve:on']);
      ws.last.receive(ev(6, 'remove', member('bob')));
      expect(client.getRoom('lobby').version).toBe(7);
      expect(ids(client)).toEqual(['ada:on', 'eve:on', 'fay:on']);
    });

    it('holds at most 1000: one more drops them all, and the view waits for a snapshot', async () => {
      const { client, ws } = await joined();
      const upd = (/** @type {number} */ v) => ev(v, 'update', member('ada', { data: v }));
      for (let v = 3; v <= 1002; v++) ws.last.receive(upd(v));
      ws.last.receive(upd(2));
      expect(client.getRoom('lobby').version).toBe(1002);
      expect(client.getMembers('lobby')[0].data).toBe(1002);
      for (let v = 1004; v <= 2004; v++) ws.last.receive(upd(v)); // the 1001st drops them
      ws.last.receive(upd(1003));
      expect(client.getRoom('lobby').version).toBe(1003);
      ws.last.receive(upd(2006));
      ws.last.receive({ type: 'sync', roomId: 'lobby', version: 2005, members: [member('ada')] });
      expect(client.getRoom('lobby').version).toBe(2006);
      expect(client.getMembers('lobby')[0].data).toBe(2006);
    });

    it('ignores events of a room without a snapshot yet', async () => {
      const { client, ws } = setup();
      client.join('lobby');
      await tick();
      ws.last.open();
      ws.last.receive(ev(2, 'join', member('bob')));
      ws.last.answerJoins([member('ada')], 1);
      expect(client.getRoom('lobby').version).toBe(1);
      expect(ids(client)).toEqual(['ada:on']);
    });

    it('orders ties by userId in UTF-8 byte order, as the server', async () => {
      const { client, ws } = await joined();
      const gone = (/** @type {string} */ id) => member(id, { online: false, lastDisconnected: 5, sessions: 0 });
      ws.last.receive(ev(2, 'leave', gone('\u{1F600}')));
      ws.last.receive(ev(3, 'leave', gone('\uFFFF')));
      ws.last.receive(ev(4, 'leave', gone('b')));
      ws.last.receive(ev(5, 'leave', gone('a\u{1F600}')));
      expect(ids(client)).toEqual(['ada:on', 'a\u{1F600}:off', 'b:off', '\uFFFF:off', '\u{1F600}:off']);
    });
  });

  it('reconnects with exponential backoff and jitter, and resumes with the same sessionIds', async () => {
    let r = 1;
    const { client, ws } = setup({ options: { random: () => r } });
    const h = client.join('lobby', { data: { s: 1 } });
    client.join('kitchen');
    const watch = client.watch('rt-other');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')], 3);
    ws.last.receive({ type: 'watching', id: ws.last.sentOf('watch')[0].id, roomId: 'other', version: 2, members: [member('zed')] });
    await expect(watch.roomId).resolves.toBe('other');
    client.update('lobby', { s: 2 });
    expect(ws.last.sentOf('update')[0]).toMatchObject({ roomId: 'lobby', data: { s: 2 } });

    // Lost without a close frame: reconnect after 250 ms (random 1: the full delay).
    ws.last.drop();
    expect(client.status).toBe('reconnecting');
    expect(client.getMembers('lobby')).toBeDefined(); // the last known state stays
    await tick(249);
    expect(ws.sockets).toHaveLength(1);
    await tick(1);
    expect(ws.sockets).toHaveLength(2);
    // The handshake fails twice: 500 ms, then 1000 ms (jitter 0.5: half of 2000 → between 1000 and 2000).
    ws.last.fail();
    await tick(499);
    expect(ws.sockets).toHaveLength(2);
    await tick(1);
    expect(ws.sockets).toHaveLength(3);
    r = 0;
    ws.last.drop();
    await tick(499);
    expect(ws.sockets).toHaveLength(3);
    await tick(1);
    expect(ws.sockets).toHaveLength(4);

    ws.last.open();
    const joins = ws.last.sentOf('join');
    expect(joins.map((j) => [j.roomId, j.sessionId])).toEqual([
      ['lobby', h.sessionId],
      ['kitchen', ws.sockets[0].sentOf('join')[1].sessionId],
    ]);
    expect(joins[0].data).toEqual({ s: 2 }); // the latest data
    expect(ws.last.sentOf('watch')).toEqual([expect.objectContaining({ roomToken: 'rt-other' })]);
    expect(ws.last.sentOf('leave')).toHaveLength(0);
    expect(client.status).toBe('connected');
  });

  it('caps the backoff and resets it after a stable socket', async () => {
    const { client, ws } = setup({ options: { backoffMax: 1000, fallbackAfter: 100 } });
    client.join('lobby');
    await tick();
    const delays = [];
    for (let i = 0; i < 5; i++) {
      const n = ws.sockets.length;
      ws.last.fail();
      let t = 0;
      while (ws.sockets.length === n) {
        await tick(10);
        t += 10;
      }
      delays.push(t);
    }
    expect(delays).toEqual([250, 500, 1000, 1000, 1000]);
    // A socket open for longer than stableAfter resets the backoff.
    ws.last.open();
    await tick(6000);
    ws.last.drop();
    await tick(250);
    expect(ws.sockets).toHaveLength(7);
    expect(client.transport).toBe('ws');
  });

  it('does not rejoin a room whose session the server ended', async () => {
    const { client, ws, errors } = setup();
    client.join('lobby');
    client.join('kitchen');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    ws.last.receive({ type: 'left', roomId: 'lobby', reason: 'ended' });
    expect(errors.at(-1)).toMatchObject({ code: 'ended' });
    expect(client.getRoom('lobby').ended).toBe(true);
    ws.last.drop();
    await tick(300);
    ws.last.open();
    expect(ws.last.sentOf('join').map((j) => j.roomId)).toEqual(['kitchen']);
  });

  it('answers a leave with a leave message after the last handle is released', async () => {
    const { client, ws } = setup();
    const a = client.join('lobby');
    const b = client.join('lobby');
    const c = client.join('kitchen');
    await tick();
    ws.last.open();
    expect(ws.last.sentOf('join')).toHaveLength(2); // one session per room
    ws.last.answerJoins([member('ada')]);
    a.leave();
    a.leave();
    await tick();
    expect(ws.last.sentOf('leave')).toHaveLength(0);
    b.leave();
    await tick();
    expect(ws.last.sentOf('leave')).toEqual([expect.objectContaining({ roomId: 'lobby' })]);
    expect(client.getMembers('lobby')).toBeUndefined();
    expect(ws.last.closedWith).toBeNull();
    // The last room left: the socket closes with a close frame.
    c.leave();
    await tick(1);
    expect(ws.last.closedWith).toEqual({ code: 1000, reason: 'idle' });
    expect(client.status).toBe('idle');
  });

  it('keeps the session when a room is released and joined again in one go (Strict Mode, route change)', async () => {
    const { client, ws } = setup();
    const a = client.join('lobby', { sessionId: 's1' });
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    a.leave();
    const b = client.join('lobby', { sessionId: 's1' });
    await tick(100);
    expect(ws.last.sentOf('leave')).toHaveLength(0);
    expect(ws.last.sentOf('join')).toHaveLength(1);
    expect(b.sessionId).toBe('s1');
  });

  it('ends the old session before joining as another session', async () => {
    const { client, ws } = setup();
    const a = client.join('lobby', { sessionId: 's1' });
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    a.leave();
    client.join('lobby', { sessionId: 's2' });
    expect(ws.last.sent.filter((m) => m.type !== 'ping').map((m) => `${m.type}:${m.sessionId ?? ''}`)).toEqual(['join:s1', 'leave:', 'join:s2']);
    ws.last.answerJoins([member('ada')], 3);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 4, event: 'join', member: member('bob') });
    expect(client.getMembers('lobby')?.map((m) => m.userId)).toEqual(['ada', 'bob']);
  });

  it('a new join after the server ended the session starts a new session and follows the room', async () => {
    const { client, ws } = setup();
    const calls = [];
    const a = client.join('lobby', { sessionId: 's1' });
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')], 1);
    ws.last.receive({ type: 'left', roomId: 'lobby', reason: 'ended' });
    a.leave();
    client.join('lobby', { sessionId: 's2' });
    client.subscribe('lobby', (m) => calls.push(m));
    expect(ws.last.sentOf('join').map((j) => j.sessionId)).toEqual(['s1', 's2']);
    expect(ws.last.sentOf('leave')).toHaveLength(0); // nothing to end: the server did
    ws.last.answerJoins([member('ada')], 5);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 6, event: 'join', member: member('bob') });
    expect(calls.at(-1).map((m) => m.userId)).toEqual(['ada', 'bob']);
    await tick(10);
    expect(ws.last.closedWith).toBeNull();
  });

  it('retries a join refused for a transient reason, gives up on a refusal', async () => {
    const { client, ws, errors } = setup();
    client.join('lobby');
    client.join('taken');
    await tick();
    ws.last.open();
    const [j1, j2] = ws.last.sentOf('join');
    ws.last.receive({ type: 'error', id: j1.id, code: 'unavailable', message: 'redis down' });
    ws.last.receive({ type: 'error', id: j2.id, code: 'conflict', message: 'sessionId belongs to another user' });
    expect(client.getRoom('taken')).toMatchObject({ ended: true, error: { code: 'conflict' } });
    expect(errors.map((e) => e.code)).toEqual(['unavailable', 'conflict']);
    await tick(250);
    expect(ws.last.sentOf('join').map((j) => j.roomId)).toEqual(['lobby', 'taken', 'lobby']);
  });

  it('reconnects when pings go unanswered', async () => {
    const { client, ws } = setup({ options: { pingInterval: 1000, pongTimeout: 500 } });
    client.join('lobby');
    await tick();
    ws.last.open();
    await tick(1000);
    const ping = ws.last.sentOf('ping')[0];
    expect(ping).toBeDefined();
    ws.last.receive({ type: 'pong', id: ping.id });
    await tick(1000);
    expect(ws.last.sentOf('ping')).toHaveLength(2);
    await tick(500);
    expect(ws.sockets[0].closedWith).toMatchObject({ code: 4000 });
    await tick(250);
    expect(ws.sockets).toHaveLength(2);
  });

  it('paces a large restore under the server rate limit', async () => {
    const { client, ws } = setup();
    for (let i = 0; i < 60; i++) client.join(`room-${i}`);
    await tick();
    ws.last.open();
    expect(ws.last.sentOf('join')).toHaveLength(25);
    await tick(1000);
    expect(ws.last.sentOf('join')).toHaveLength(60);
  });

  it('close() ends the sessions with a close frame and forgets the rooms', async () => {
    const { client, ws, http } = setup();
    const seen = [];
    client.subscribe('lobby', (m) => seen.push(m));
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    await client.close();
    expect(ws.last.closedWith).toMatchObject({ code: 1000 });
    expect(seen.at(-1)).toBeUndefined();
    expect(http.calls).toHaveLength(0);
    expect(client.status).toBe('idle');
    // Usable again.
    client.join('lobby');
    await tick();
    expect(ws.sockets).toHaveLength(2);
  });

  it('close() while reconnecting ends the sessions over HTTP', async () => {
    const { client, ws, http } = setup();
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    ws.last.drop();
    await client.close();
    expect(http.calls).toEqual([expect.objectContaining({ method: 'POST', path: '/v1/disconnect', body: 'st-lobby-' + ws.sockets[0].sentOf('join')[0].sessionId })]);
  });

  it('signOut() posts /v1/signout, then closes', async () => {
    const { client, ws, http } = setup({ http: (req) => (req.path === '/v1/signout' ? { status: 200, body: { rooms: 2 } } : { status: 204 }) });
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    await expect(client.signOut()).resolves.toEqual({ rooms: 2 });
    expect(http.calls[0]).toMatchObject({ method: 'POST', path: '/v1/signout', query: { userId: 'ada' } });
    expect(ws.last.closedWith).toMatchObject({ code: 1000 });
  });

  it('watch() follows a room without a session and unwatch() stops', async () => {
    const { client, ws } = setup();
    const calls = [];
    client.subscribe('other', (m) => calls.push(m));
    const w = client.watch('rt-other');
    await tick();
    ws.last.open();
    ws.last.receive({ type: 'watching', id: ws.last.sentOf('watch')[0].id, roomId: 'other', version: 2, members: [member('zed')] });
    expect(await w.roomId).toBe('other');
    ws.last.receive({ type: 'presence', roomId: 'other', version: 3, event: 'join', member: member('amy') });
    expect(calls.at(-1).map((m) => m.userId)).toEqual(['zed', 'amy']);
    w.unwatch();
    expect(ws.last.sentOf('unwatch')).toEqual([expect.objectContaining({ roomId: 'other' })]);
    expect(calls.at(-1)).toBeUndefined();
  });
});

describe('watchUsers', () => {
  const u = (userId, online, rooms = online ? 1 : 0, lastDisconnected = online ? 0 : 5) => ({ userId, online, rooms, lastDisconnected });

  it('watches users on the socket, applies user frames, and unwatches the last handle only', async () => {
    const { client, ws } = setup();
    const seen = [];
    const a = client.watchUsers(['bob', 'cat'], (users) => seen.push(users));
    const b = client.watchUsers(['bob']);
    await tick();
    ws.last.open();
    expect(ws.last.sentOf('watchUsers')).toEqual([expect.objectContaining({ userIds: ['bob', 'cat'] })]);
    ws.last.receive({ type: 'watchingUsers', id: ws.last.sentOf('watchUsers')[0].id, users: [u('bob', false), u('cat', true)] });
    expect(seen.at(-1)).toEqual([u('bob', false), u('cat', true)]);
    ws.last.receive({ type: 'user', ...u('bob', true, 2) });
    expect(client.getUsers(['bob'])).toEqual([u('bob', true, 2)]);
    expect(seen).toHaveLength(2);
    ws.last.receive({ type: 'user', ...u('zed', true) }); // not watched: ignored
    expect(seen).toHaveLength(2);
    a.unwatch();
    expect(ws.last.sentOf('unwatchUsers')).toEqual([expect.objectContaining({ userIds: ['cat'] })]);
    b.unwatch();
    expect(ws.last.sentOf('unwatchUsers')[1]).toMatchObject({ userIds: ['bob'] });
    expect(client.getUsers(['bob'])).toEqual([undefined]);
    await tick();
    expect(ws.last.closedWith).toEqual({ code: 1000, reason: 'idle' });
  });

  it('watches the users again after a reconnect', async () => {
    const { client, ws } = setup();
    client.watchUsers(['bob']);
    await tick();
    ws.last.open();
    ws.last.drop();
    await tick(5000);
    ws.last.open();
    expect(ws.last.sentOf('watchUsers')).toEqual([expect.objectContaining({ userIds: ['bob'] })]);
  });

  it('splits a long list over messages of at most 16 KiB', async () => {
    const { client, ws } = setup();
    const ids = Array.from({ length: 1000 }, (_, i) => `user-with-a-longer-id-${i}`);
    client.watchUsers(ids);
    await tick();
    ws.last.open();
    await tick(1000);
    const sent = ws.last.sentOf('watchUsers');
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.flatMap((m) => m.userIds)).toEqual(ids);
    for (const m of sent) expect(JSON.stringify(m).length).toBeLessThan(16384);
  });

  it('refuses bad input', () => {
    const { client } = setup();
    expect(() => client.watchUsers([])).toThrow(TypeError);
    expect(() => client.watchUsers([''])).toThrow(TypeError);
    expect(() => client.watchUsers(/** @type {any} */ ('bob'))).toThrow(TypeError);
  });
});

describe('lifecycle', () => {
  it('leaves after the grace period when hidden, rejoins with the same sessionId when visible', async () => {
    const { client, ws, life } = setup({ options: { hiddenGrace: 1000 } });
    const h = client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);

    // Hidden briefly: nothing happens.
    life.emit('background');
    await tick(900);
    life.emit('active');
    await tick(5000);
    expect(ws.sockets).toHaveLength(1);
    expect(ws.last.closedWith).toBeNull();

    life.emit('background');
    await tick(999);
    expect(ws.last.closedWith).toBeNull();
    await tick(1);
    expect(ws.last.closedWith).toEqual({ code: 1000, reason: 'hidden' });
    expect(client.status).toBe('suspended');
    expect(client.getMembers('lobby')).toHaveLength(1); // kept while hidden
    await tick(60000);
    expect(ws.sockets).toHaveLength(1); // no reconnect while suspended

    life.emit('active');
    await tick();
    expect(ws.sockets).toHaveLength(2);
    ws.last.open();
    expect(ws.last.sentOf('join')).toEqual([expect.objectContaining({ roomId: 'lobby', sessionId: h.sessionId })]);
  });

  it('on pagehide sends each session token with sendBeacon and closes the socket', async () => {
    const { client, ws, life, beacons } = setup();
    const h = client.join('lobby');
    client.join('kitchen');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    life.emit('terminate');
    expect(beacons).toEqual([
      { url: `${URL_}/v1/disconnect`, body: `st-lobby-${h.sessionId}` },
      { url: `${URL_}/v1/disconnect`, body: expect.stringMatching(/^st-kitchen-/) },
    ]);
    expect(ws.last.closedWith).toMatchObject({ code: 1000, reason: 'pagehide' });
    // Back from the back/forward cache.
    life.emit('active');
    await tick();
    expect(ws.sockets).toHaveLength(2);
  });

  it('falls back to fetch keepalive when sendBeacon refuses', async () => {
    const { client, ws, life, http } = setup({ options: { sendBeacon: () => false } });
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')]);
    life.emit('terminate');
    await tick();
    expect(http.calls).toEqual([expect.objectContaining({ path: '/v1/disconnect', keepalive: true, headers: { 'Content-Type': 'text/plain' } })]);
  });

  it('a page that starts hidden leaves after the grace period', async () => {
    const { client, ws, life } = setup({ options: { hiddenGrace: 1000 } });
    life.emit('background');
    client.join('lobby');
    await tick();
    ws.last.open();
    await tick(1000);
    expect(ws.last.closedWith).toMatchObject({ reason: 'hidden' });
    expect(life.subscribers).toBe(1);
    await client.close();
    expect(life.subscribers).toBe(0);
  });

  it('browserLifecycle maps visibilitychange, pagehide and pageshow', () => {
    const doc = new EventTarget();
    const win = new EventTarget();
    /** @type {any} */ (doc).visibilityState = 'visible';
    const seen = [];
    const l = browserLifecycle(win, doc);
    const off = l.subscribe((s) => seen.push(s));
    /** @type {any} */ (doc).visibilityState = 'hidden';
    doc.dispatchEvent(new Event('visibilitychange'));
    expect(l.state()).toBe('background');
    win.dispatchEvent(new Event('pagehide'));
    /** @type {any} */ (doc).visibilityState = 'visible';
    win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: false }));
    win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
    off();
    doc.dispatchEvent(new Event('visibilitychange'));
    expect(seen).toEqual(['background', 'terminate', 'active']);
  });

  it('appStateLifecycle maps React Native AppState', () => {
    let cb = (/** @type {string} */ _s) => {};
    let removed = false;
    const AppState = {
      currentState: 'active',
      addEventListener: (/** @type {string} */ _t, /** @type {any} */ f) => {
        cb = f;
        return { remove: () => (removed = true) };
      },
    };
    const l = appStateLifecycle(AppState);
    const seen = [];
    const off = l.subscribe((s) => seen.push(s));
    cb('inactive');
    cb('background');
    cb('active');
    off();
    expect(seen).toEqual(['background', 'background', 'active']);
    expect(removed).toBe(true);
    expect(l.state()).toBe('active');
  });

  it('React Native: background leaves after the grace period, active rejoins', async () => {
    let cb = (/** @type {string} */ _s) => {};
    const AppState = { currentState: 'active', addEventListener: (/** @type {any} */ _t, /** @type {any} */ f) => ((cb = f), { remove() {} }) };
    const { client, ws } = setup({ options: { lifecycle: appStateLifecycle(AppState), hiddenGrace: 2000 } });
    client.join('lobby');
    await tick();
    ws.last.open();
    cb('background');
    await tick(2000);
    expect(client.status).toBe('suspended');
    cb('active');
    await tick();
    ws.last.open();
    expect(ws.last.sentOf('join')).toHaveLength(1);
  });
});

describe('HTTP fallback', () => {
  /** A fake HTTP API: heartbeat sessions and a list with an ETag. */
  function httpServer() {
    const state = { version: 1, members: [member('ada')], heartbeats: 0 };
    return {
      state,
      /** @param {any} req */
      handler(req) {
        if (req.path === '/v1/heartbeat') {
          state.heartbeats++;
          const b = JSON.parse(req.body);
          return { status: 200, body: { roomToken: `rt-${b.roomId}`, sessionToken: `st-${b.sessionId}`, interval: b.interval } };
        }
        if (req.path === '/v1/list') {
          const etag = `"v${state.version}"`;
          if (req.headers['If-None-Match'] === etag) return { status: 304 };
          return { status: 200, headers: { ETag: etag }, body: { roomId: 'lobby', version: state.version, members: state.members } };
        }
        if (req.path === '/v1/disconnect') return { status: 204 };
        return undefined;
      },
    };
  }

  it('uses HTTP heartbeats and lists with ETags when there is no WebSocket', async () => {
    const srv = httpServer();
    const { client, http } = setup({ options: { WebSocket: null, interval: 2000, pollInterval: 1000 }, http: srv.handler });
    const calls = [];
    client.subscribe('lobby', (m) => calls.push(m));
    const h = client.join('lobby', { name: 'Ada', data: { s: 1 } });
    await tick();
    expect(client.status).toBe('http');
    expect(client.transport).toBe('http');
    const hb = http.calls.filter((c) => c.path === '/v1/heartbeat');
    expect(hb).toHaveLength(1);
    expect(JSON.parse(hb[0].body)).toEqual({ roomId: 'lobby', sessionId: h.sessionId, interval: 2000, data: { s: 1 }, userId: 'ada', name: 'Ada' });
    const lists = () => http.calls.filter((c) => c.path === '/v1/list');
    expect(lists()).toHaveLength(1);
    expect(lists()[0].query.roomToken).toBe('rt-lobby');
    expect(calls).toHaveLength(1);

    await tick(1000);
    expect(lists()[1].headers['If-None-Match']).toBe('"v1"');
    expect(calls).toHaveLength(1); // 304: nothing changed
    srv.state.version = 2;
    srv.state.members = [member('ada'), member('bob')];
    await tick(1000);
    expect(calls).toHaveLength(2);
    expect(calls[1].map((m) => m.userId)).toEqual(['ada', 'bob']);
    // Heartbeats every interval; data only when it changed.
    expect(http.calls.filter((c) => c.path === '/v1/heartbeat')).toHaveLength(2);
    expect(JSON.parse(http.calls.filter((c) => c.path === '/v1/heartbeat')[1].body).data).toBeUndefined();
    client.update('lobby', { s: 2 });
    await tick();
    expect(JSON.parse(http.calls.filter((c) => c.path === '/v1/heartbeat')[2].body).data).toEqual({ s: 2 });

    h.leave();
    await tick();
    expect(http.calls.at(-1)).toMatchObject({ path: '/v1/disconnect', body: `st-${h.sessionId}` });
    const n = http.calls.length;
    await tick(10000);
    expect(http.calls).toHaveLength(n); // nothing polled or sent any more
    expect(client.status).toBe('idle');
  });

  it('falls back after N sockets that never open, and moves back to a WebSocket later', async () => {
    const srv = httpServer();
    const { client, ws, http } = setup({ options: { fallbackAfter: 3, wsRetryInterval: 30000, interval: 10000 }, http: srv.handler });
    const h = client.join('lobby');
    await tick();
    ws.last.fail();
    await tick(250);
    ws.last.fail();
    await tick(500);
    expect(client.transport).toBe('ws');
    ws.last.fail();
    await tick();
    expect(client.transport).toBe('http');
    expect(client.status).toBe('http');
    expect(http.calls.filter((c) => c.path === '/v1/heartbeat')).toHaveLength(1);
    expect(client.getMembers('lobby')).toHaveLength(1);

    await tick(30000);
    expect(ws.sockets).toHaveLength(4); // the probe
    ws.last.open();
    expect(client.transport).toBe('ws');
    expect(ws.last.sentOf('join')).toEqual([expect.objectContaining({ sessionId: h.sessionId })]);
    const n = http.calls.length;
    await tick(30000);
    expect(http.calls).toHaveLength(n); // no more heartbeats or polls
  });

  it('on hidden (after the grace) ends HTTP sessions with /v1/disconnect', async () => {
    const srv = httpServer();
    const { client, http, life } = setup({ options: { WebSocket: null, hiddenGrace: 500 }, http: srv.handler });
    const h = client.join('lobby');
    await tick();
    life.emit('background');
    await tick(500);
    expect(http.calls.at(-1)).toMatchObject({ path: '/v1/disconnect', body: `st-${h.sessionId}` });
    const n = http.calls.length;
    await tick(60000);
    expect(http.calls).toHaveLength(n);
    life.emit('active');
    await tick();
    expect(http.calls.at(-2)).toMatchObject({ path: '/v1/heartbeat' });
  });

  it('a refused heartbeat ends the room; a failing one is retried', async () => {
    let fail = 'network';
    const { client, http, errors } = setup({
      options: { WebSocket: null },
      http: (req) => {
        if (fail === 'network') throw new TypeError('fetch failed');
        return { status: 409, body: { error: { code: 'conflict', message: 'taken' } } };
      },
    });
    client.join('lobby');
    await tick();
    expect(errors[0]).toBeInstanceOf(TypeError);
    fail = 'conflict';
    await tick(250);
    expect(http.calls).toHaveLength(2);
    expect(client.getRoom('lobby')).toMatchObject({ ended: true, error: { code: 'conflict', status: 409 } });
    await tick(60000);
    expect(http.calls).toHaveLength(2);
  });
});

describe('helpers', () => {
  it('ownFirst puts the own user first, keeping the rest in order', () => {
    const list = [member('a'), member('b'), member('c')];
    expect(ownFirst(list, 'c').map((m) => m.userId)).toEqual(['c', 'a', 'b']);
    expect(ownFirst(list, 'a')).toBe(list);
    expect(ownFirst(list, 'zz')).toBe(list);
    expect(ownFirst(undefined, 'a')).toBeUndefined();
  });

  it('lastSeen says online or how long ago', () => {
    const now = 10_000_000_000;
    expect(lastSeen(member('a'), now)).toBe('online');
    expect(lastSeen(member('a', { online: false, lastDisconnected: now - 5000 }), now)).toBe('last seen just now');
    expect(lastSeen(member('a', { online: false, lastDisconnected: now - 5 * 60000 }), now)).toBe('last seen 5 min ago');
    expect(lastSeen(member('a', { online: false, lastDisconnected: now - 3 * 3600000 }), now)).toBe('last seen 3 h ago');
    expect(lastSeen(member('a', { online: false, lastDisconnected: now - 72 * 3600000 }), now)).toBe('last seen 3 d ago');
  });

  it('newSessionId makes UUIDs, also without crypto.randomUUID', () => {
    const re = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(newSessionId()).toMatch(re);
    const orig = globalThis.crypto;
    try {
      Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true });
      const a = newSessionId();
      expect(a).toMatch(re);
      expect(newSessionId()).not.toBe(a);
    } finally {
      Object.defineProperty(globalThis, 'crypto', { value: orig, configurable: true });
    }
  });
});
