// @vitest-environment jsdom
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import * as React from 'react';
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { PresenceClient } from '../src/index.js';
import {
  FacePile,
  PresenceProvider,
  useGlobalPresence,
  usePresence,
  useRoomPresence,
  useSignOutWithPresence,
  useUsersPresence,
} from '../src/react.js';
import { fakeFetch, fakeLifecycle, fakeWebSockets, member } from './fakes.js';

const h = React.createElement;

beforeAll(() => {
  /** @type {any} */ (globalThis).IS_REACT_ACT_ENVIRONMENT = true;
});

/** @type {Array<() => void>} */
const cleanups = [];
afterEach(() => {
  while (cleanups.length) /** @type {() => void} */ (cleanups.pop())();
});

/** @param {any} [o] */
function makeClient(o = {}) {
  const ws = fakeWebSockets();
  const http = fakeFetch(o.http ?? (() => ({ status: 200, body: { rooms: 1 } })));
  const client = new PresenceClient({
    url: 'http://presence.test',
    WebSocket: ws.WebSocket,
    fetch: /** @type {any} */ (http.fetch),
    lifecycle: fakeLifecycle(),
    ...o.options,
  });
  return { client, ws, http };
}

/** @param {React.ReactElement} el */
function render(el) {
  const container = document.createElement('div');
  document.body.appendChild(container);
  const root = createRoot(container);
  act(() => root.render(el));
  const r = {
    container,
    /** @param {React.ReactElement} next */
    rerender: (next) => act(() => root.render(next)),
    unmount: () => act(() => root.unmount()),
  };
  cleanups.push(() => {
    try {
      act(() => root.unmount());
    } catch {
      // already unmounted
    }
    container.remove();
  });
  return r;
}

/** Lets timers and promises run (inside act). */
const settle = (ms = 5) => act(() => new Promise((r) => setTimeout(r, ms)));

describe('usePresence', () => {
  it('joins, returns the members own user first, re-renders only on change, leaves on unmount', async () => {
    const { client, ws } = makeClient();
    let renders = 0;
    /** @type {any} */
    let seen;
    function Room() {
      renders++;
      seen = usePresence('lobby', { userId: 'cy', name: 'Cy' });
      return h('span', null, (seen ?? []).map((m) => m.userId).join(','));
    }
    const r = render(h(PresenceProvider, { client }, h(Room)));
    await settle();
    expect(seen).toBeUndefined();
    ws.last.open();
    expect(ws.last.sentOf('join')).toEqual([expect.objectContaining({ roomId: 'lobby', userId: 'cy', name: 'Cy' })]);
    act(() => ws.last.answerJoins([member('ada'), member('bob'), member('cy')], 3));
    expect(r.container.textContent).toBe('cy,ada,bob');
    const before = renders;
    // Nothing visible changes: no render.
    act(() => ws.last.receive({ type: 'sync', roomId: 'lobby', version: 4, members: [member('ada'), member('bob'), member('cy')] }));
    act(() => ws.last.receive({ type: 'presence', roomId: 'lobby', version: 5, event: 'update', member: member('bob') }));
    expect(renders).toBe(before);
    act(() => ws.last.receive({ type: 'presence', roomId: 'lobby', version: 6, event: 'join', member: member('dan') }));
    expect(renders).toBe(before + 1);
    expect(r.container.textContent).toBe('cy,ada,bob,dan');

    r.unmount();
    await settle();
    expect(ws.last.sentOf('leave')).toEqual([expect.objectContaining({ roomId: 'lobby' })]);
  });

  it('in Strict Mode keeps one session (no second join, no leave)', async () => {
    const { client, ws } = makeClient();
    const sessionIds = new Set();
    function Room() {
      const m = usePresence('lobby', { userId: 'ada' });
      return h('span', null, String(m?.length ?? '-'));
    }
    const r = render(h(React.StrictMode, null, h(PresenceProvider, { client }, h(Room))));
    await settle(20);
    expect(ws.sockets).toHaveLength(1);
    ws.last.open();
    const joins = ws.last.sentOf('join');
    for (const j of joins) sessionIds.add(j.sessionId);
    expect(joins).toHaveLength(1);
    act(() => ws.last.answerJoins([member('ada')]));
    await settle(20);
    expect(ws.last.sentOf('leave')).toHaveLength(0);
    expect(ws.last.sentOf('join')).toHaveLength(1);
    expect(r.container.textContent).toBe('1');
    r.unmount();
    await settle(20);
    expect(ws.last.sentOf('leave')).toHaveLength(1);
  });

  it('a room change ends the old session', async () => {
    const { client, ws } = makeClient();
    function Room(/** @type {{room: string}} */ { room }) {
      usePresence(room, { userId: 'ada' });
      return null;
    }
    const r = render(h(PresenceProvider, { client }, h(Room, { room: 'a' })));
    await settle();
    ws.last.open();
    act(() => ws.last.answerJoins([member('ada')]));
    r.rerender(h(PresenceProvider, { client }, h(Room, { room: 'b' })));
    await settle();
    // (the leave waits for the end of the commit: a remount would keep the session)
    expect(ws.last.sent.filter((m) => m.type !== 'ping').map((m) => `${m.type}:${m.roomId}`)).toEqual(['join:a', 'join:b', 'leave:a']);
    expect(ws.last.closedWith).toBeNull(); // one socket for both
  });

  it('two hook instances have their own sessionIds; in one room they share one session', async () => {
    const { client, ws } = makeClient();
    function Room(/** @type {{room: string}} */ { room }) {
      usePresence(room, { userId: 'ada' });
      return null;
    }
    const r = render(h(PresenceProvider, { client }, h(Room, { room: 'a' }), h(Room, { room: 'b' }), h(Room, { room: 'a' })));
    await settle();
    ws.last.open();
    const joins = ws.last.sentOf('join');
    expect(joins.map((j) => j.roomId)).toEqual(['a', 'b']);
    expect(joins[0].sessionId).not.toBe(joins[1].sessionId);
    r.rerender(h(PresenceProvider, { client }, h(Room, { room: 'a' }), h(Room, { room: 'b' })));
    await settle();
    expect(ws.last.sentOf('leave')).toHaveLength(0);
  });

  it('sends data changes as updates', async () => {
    const { client, ws } = makeClient();
    function Room(/** @type {{typing: boolean}} */ { typing }) {
      usePresence('lobby', { userId: 'ada', data: { typing } });
      return null;
    }
    const r = render(h(PresenceProvider, { client }, h(Room, { typing: false })));
    await settle();
    ws.last.open();
    expect(ws.last.sentOf('join')[0].data).toEqual({ typing: false });
    act(() => ws.last.answerJoins([member('ada')]));
    r.rerender(h(PresenceProvider, { client }, h(Room, { typing: false })));
    expect(ws.last.sentOf('update')).toHaveLength(0);
    r.rerender(h(PresenceProvider, { client }, h(Room, { typing: true })));
    expect(ws.last.sentOf('update')).toEqual([expect.objectContaining({ data: { typing: true } })]);
  });
});

describe('the hooks of the apps we replace', () => {
  it('useGlobalPresence joins the global room under the user name once there is one', async () => {
    const { client, ws } = makeClient();
    /** @type {any} */
    let users;
    function Home(/** @type {{name: string}} */ { name }) {
      users = useGlobalPresence(name);
      return null;
    }
    const r = render(h(PresenceProvider, { client }, h(Home, { name: '' })));
    await settle();
    expect(ws.sockets).toHaveLength(0); // not signed in: nothing
    expect(users).toBeUndefined();
    r.rerender(h(PresenceProvider, { client }, h(Home, { name: 'Ada' })));
    await settle();
    ws.last.open();
    expect(ws.last.sentOf('join')).toEqual([expect.objectContaining({ roomId: 'app-global-room', userId: 'Ada', name: 'Ada' })]);
    act(() => ws.last.answerJoins([member('Bob'), member('Ada')]));
    expect(users.map((/** @type {any} */ m) => m.userId)).toEqual(['Ada', 'Bob']);
  });

  it('useGlobalPresence uses the provider global room; useRoomPresence a room, and the client user', async () => {
    const { client, ws } = makeClient({ options: { userId: 'u1' } });
    function Both() {
      useGlobalPresence('Ada');
      useRoomPresence('chat-1', 'Ada');
      return null;
    }
    render(h(PresenceProvider, { client, globalRoom: 'everyone' }, h(Both)));
    await settle();
    ws.last.open();
    expect(ws.last.sentOf('join').map((j) => [j.roomId, j.userId, j.name])).toEqual([
      ['everyone', 'u1', 'Ada'],
      ['chat-1', 'u1', 'Ada'],
    ]);
  });

  it('with a token the user comes from the JWT, not the name', async () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'user-7' })).toString('base64url');
    const { client, ws } = makeClient({ options: { getToken: () => `x.${payload}.y` } });
    /** @type {any} */
    let users;
    function Home() {
      users = useGlobalPresence('Ada');
      return null;
    }
    render(h(PresenceProvider, { client }, h(Home)));
    await settle();
    ws.last.open();
    expect(ws.last.sentOf('join')[0].userId).toBeUndefined();
    act(() => ws.last.answerJoins([member('user-1'), member('user-7')]));
    expect(users[0].userId).toBe('user-7');
  });

  it('useSignOutWithPresence clears presence, closes the client, then signs out of the app', async () => {
    const order = [];
    const { client, ws, http } = makeClient({
      http: (/** @type {any} */ req) => {
        order.push(`${req.method} ${req.path}`);
        return { status: 200, body: { rooms: 1 } };
      },
    });
    /** @type {any} */
    let api;
    function Profile() {
      useGlobalPresence('Ada');
      api = useSignOutWithPresence(async (/** @type {string} */ why) => {
        order.push(`app signOut ${why}`);
        return 'done';
      });
      return null;
    }
    render(h(PresenceProvider, { client }, h(Profile)));
    await settle();
    ws.last.open();
    act(() => ws.last.answerJoins([member('Ada')]));
    let result;
    await act(async () => {
      result = await api.signOut('button');
    });
    expect(result).toBe('done');
    expect(order).toEqual(['POST /v1/signout', 'app signOut button']);
    expect(http.calls[0].query).toEqual({ userId: 'Ada' });
    expect(ws.last.closedWith).toMatchObject({ code: 1000 });
  });

  it('useSignOutWithPresence signs out of the app even when presence fails, with the provider callback', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    const { client } = makeClient({ http: () => ({ status: 503, body: { error: { code: 'unavailable', message: 'down' } } }) });
    const onSignOut = vi.fn();
    /** @type {any} */
    let api;
    function Profile() {
      api = useSignOutWithPresence();
      return null;
    }
    render(h(PresenceProvider, { client, onSignOut }, h(Profile)));
    await act(async () => {
      await api.signOut();
    });
    expect(onSignOut).toHaveBeenCalledTimes(1);
    expect(errors).toHaveBeenCalled();
    errors.mockRestore();
  });

  it('a provider without a client creates one and closes it on unmount', async () => {
    const ws = fakeWebSockets();
    function Home() {
      useGlobalPresence('Ada');
      return null;
    }
    const r = render(
      h(PresenceProvider, { url: 'http://presence.test', WebSocket: ws.WebSocket, lifecycle: false }, h(React.StrictMode, null, h(Home))),
    );
    await settle(20);
    expect(ws.sockets).toHaveLength(1);
    ws.last.open();
    expect(ws.last.sentOf('join')).toHaveLength(1);
    r.unmount();
    await settle(20);
    expect(ws.last.closedWith).toMatchObject({ code: 1000 });
  });
});

describe('useUsersPresence', () => {
  it('watches the users while mounted and re-renders when one changes', async () => {
    const { client, ws } = makeClient({ options: { userId: 'ada' } });
    /** @type {any[]} */
    const renders = [];
    function Friends() {
      const users = useUsersPresence(['bob', 'cat'], { client });
      renders.push(users);
      return h('span', null, users.map((x) => (x ? `${x.userId}:${x.online}` : '?')).join(' '));
    }
    const r = render(h(Friends));
    await settle();
    ws.last.open();
    await settle();
    const sent = ws.last.sentOf('watchUsers');
    expect(sent).toEqual([expect.objectContaining({ userIds: ['bob', 'cat'] })]);
    expect(r.container.textContent).toBe('? ?');
    act(() =>
      ws.last.receive({
        type: 'watchingUsers',
        id: sent[0].id,
        users: [
          { userId: 'bob', online: true, rooms: 1, lastDisconnected: 0 },
          { userId: 'cat', online: false, rooms: 0, lastDisconnected: 0 },
        ],
      }),
    );
    expect(r.container.textContent).toBe('bob:true cat:false');
    const n = renders.length;
    act(() => ws.last.receive({ type: 'user', userId: 'cat', online: true, rooms: 1, lastDisconnected: 0 }));
    expect(r.container.textContent).toBe('bob:true cat:true');
    expect(renders.length).toBe(n + 1);
    r.unmount();
    expect(ws.last.sentOf('unwatchUsers')).toEqual([expect.objectContaining({ userIds: ['bob', 'cat'] })]);
  });
});

describe('FacePile', () => {
  const now = 1_800_000_000_000;
  const people = [
    member('ada', { name: 'Ada Lovelace' }),
    member('bob', { image: 'https://example.test/bob.png' }),
    member('cy'),
    member('dan', { online: false, lastDisconnected: now - 5 * 60_000, sessions: 0 }),
    member('eve', { online: false, lastDisconnected: now - 3 * 3600_000, sessions: 0 }),
  ];

  it('shows the first N, then +N; offline members with last seen', () => {
    const r = render(h(FacePile, { members: people, max: 3, now }));
    const avatars = r.container.querySelectorAll('[data-user-id]');
    expect([...avatars].map((a) => a.getAttribute('data-user-id'))).toEqual(['ada', 'bob', 'cy']);
    expect(avatars[0].textContent).toBe('AL');
    expect(avatars[0].getAttribute('title')).toBe('Ada Lovelace — online');
    expect(avatars[1].querySelector('img')?.getAttribute('src')).toBe('https://example.test/bob.png');
    const more = /** @type {HTMLElement} */ (r.container.querySelector('.presence-more'));
    expect(more.textContent).toBe('+2');
    expect(more.title).toBe('dan — last seen 5 min ago\neve — last seen 3 h ago');
    expect(r.container.firstElementChild?.getAttribute('aria-label')).toBe('3 online');
  });

  it('shows offline members faded, or hides them', () => {
    const r = render(h(FacePile, { members: people, now }));
    const dan = /** @type {HTMLElement} */ (r.container.querySelector('[data-user-id="dan"]'));
    expect(dan.getAttribute('data-online')).toBe('false');
    expect(dan.title).toBe('dan — last seen 5 min ago');
    expect(dan.style.opacity).toBe('0.45');
    expect(r.container.querySelector('.presence-more')).toBeNull();
    r.rerender(h(FacePile, { members: people, now, showOffline: false }));
    expect(r.container.querySelectorAll('[data-user-id]')).toHaveLength(3);
    r.rerender(h(FacePile, { members: undefined }));
    expect(r.container.querySelectorAll('[data-user-id]')).toHaveLength(0);
  });
});
