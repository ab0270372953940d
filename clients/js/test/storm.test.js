import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PresenceClient } from '../src/index.js';
import { fakeLifecycle, fakeWebSockets, member } from './fakes.js';

// Storms (batch frames) and count mode, against a fake server.

function setup() {
  const ws = fakeWebSockets();
  const errors = [];
  const client = new PresenceClient({
    url: 'http://presence.test',
    userId: 'ada',
    WebSocket: ws.WebSocket,
    fetch: /** @type {any} */ (async () => ({ status: 204, ok: true, headers: { get: () => null }, text: async () => '' })),
    lifecycle: fakeLifecycle(),
    random: () => 1,
    onError: (e) => errors.push(e),
  });
  return { client, ws, errors };
}

const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);
const ids = (/** @type {any} */ ms) => ms.map((/** @type {any} */ x) => `${x.userId}:${x.online ? 'on' : 'off'}`);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('batch frames', () => {
  it('applies a batch at the next version: each user once, joins in order', async () => {
    const { client, ws } = setup();
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada'), member('bob')], 4);
    ws.last.receive({
      type: 'batch',
      roomId: 'lobby',
      fromVersion: 5,
      version: 12,
      changes: [
        { event: 'leave', userId: 'bob', member: member('bob', { online: false, lastDisconnected: 7, sessions: 0 }) },
        { event: 'join', userId: 'cy', member: member('cy', { data: { n: 2 } }) },
        { event: 'join', userId: 'dan', member: member('dan') },
        { event: 'remove', userId: 'eve', member: member('eve') },
      ],
    });
    expect(client.getRoom('lobby').version).toBe(12);
    expect(ids(client.getMembers('lobby'))).toEqual(['ada:on', 'cy:on', 'dan:on', 'bob:off']);
    expect(client.getMembers('lobby')[1].data).toEqual({ n: 2 });
    // The events of the batch, late or again, change nothing; the next one applies.
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 9, event: 'leave', member: member('cy', { online: false }) });
    ws.last.receive({ type: 'batch', roomId: 'lobby', fromVersion: 5, version: 12, changes: [] });
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 13, event: 'join', member: member('bob') });
    expect(ids(client.getMembers('lobby'))).toEqual(['ada:on', 'cy:on', 'dan:on', 'bob:on']);
    expect(client.getRoom('lobby').version).toBe(13);
  });

  it('a batch gives the view the same members, in the same order, as its changes one by one', async () => {
    // Random rooms and batches (a seeded generator): one client gets the
    // changes as a batch, the other as presence frames.
    let seed = 7;
    const rnd = (/** @type {number} */ n) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const kinds = ['join', 'leave', 'update', 'remove'];
    for (let round = 0; round < 30; round++) {
      const start = [];
      for (let i = 0; i < 40; i++) {
        if (rnd(2)) start.push(member(`u${i}`, { online: rnd(3) > 0, lastDisconnected: rnd(100), data: { v: 0 } }));
      }
      const changes = [];
      const used = new Set();
      for (let i = 0; i < 30; i++) {
        const u = `u${rnd(50)}`;
        if (used.has(u)) continue;
        used.add(u);
        const event = kinds[rnd(kinds.length)];
        const online = event === 'join' || (event === 'update' && rnd(2) === 1);
        changes.push({ event, userId: u, member: member(u, { online, lastDisconnected: online ? 0 : rnd(100), data: { v: i } }) });
      }
      const views = [];
      for (const asBatch of [true, false]) {
        const { client, ws } = setup();
        client.join('lobby');
        await tick();
        ws.last.open();
        ws.last.answerJoins(start.slice(), 10);
        if (asBatch) {
          ws.last.receive({ type: 'batch', roomId: 'lobby', fromVersion: 11, version: 10 + changes.length, changes });
        } else {
          changes.forEach((c, i) => ws.last.receive({ type: 'presence', roomId: 'lobby', version: 11 + i, event: c.event, member: c.member }));
        }
        views.push(client.getMembers('lobby').map((/** @type {any} */ x) => `${x.userId}:${x.online}:${x.data?.v}`));
        client.close?.();
      }
      expect(views[0]).toEqual(views[1]);
    }
  });

  it('holds a batch ahead of the view until the versions before it come', async () => {
    const { client, ws } = setup();
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([member('ada')], 1);
    ws.last.receive({ type: 'batch', roomId: 'lobby', fromVersion: 3, version: 9, changes: [{ event: 'join', userId: 'cy', member: member('cy') }] });
    expect(client.getRoom('lobby').version).toBe(1);
    ws.last.receive({ type: 'presence', roomId: 'lobby', version: 2, event: 'join', member: member('bob') });
    expect(client.getRoom('lobby').version).toBe(9);
    expect(ids(client.getMembers('lobby'))).toEqual(['ada:on', 'bob:on', 'cy:on']);
  });

  it('a storm of presence, batch and sync frames ends at the true state', async () => {
    const { client, ws } = setup();
    client.join('lobby');
    await tick();
    ws.last.open();
    ws.last.answerJoins([], 0);
    // The server's truth: users join in order; each batch holds the last change of each user.
    const truth = [];
    let v = 0;
    const frames = [];
    for (let b = 0; b < 50; b++) {
      const from = v + 1;
      const changes = [];
      for (let i = 0; i < 40; i++) {
        const u = `u${b * 40 + i}`;
        truth.push(member(u));
        changes.push({ event: 'join', userId: u, member: member(u) });
        v++;
      }
      frames.push({ type: 'batch', roomId: 'lobby', fromVersion: from, version: v, changes });
    }
    frames.splice(10, 0, { type: 'sync', roomId: 'lobby', version: 400, members: truth.slice(0, 400) });
    for (const f of frames) ws.last.receive(f);
    expect(client.getRoom('lobby').version).toBe(2000);
    expect(client.getMembers('lobby').map((m) => m.userId)).toEqual(truth.map((m) => m.userId));
  });
});

describe('count mode', () => {
  it('watches a room in count mode, follows count frames, and watches again after a reconnect', async () => {
    const { client, ws } = setup();
    const seen = [];
    const h = client.watchCount('rt-stage', (n) => seen.push(n.online));
    await tick();
    ws.last.open();
    const w = ws.last.sentOf('watch');
    expect(w).toHaveLength(1);
    expect(w[0]).toMatchObject({ roomToken: 'rt-stage', mode: 'count' });
    ws.last.receive({ type: 'watching', id: w[0].id, roomId: 'stage', version: 3, online: 12, sessions: 14 });
    await expect(h.roomId).resolves.toBe('stage');
    expect(client.getCount('stage')).toEqual({ roomId: 'stage', version: 3, online: 12, sessions: 14 });
    ws.last.receive({ type: 'count', roomId: 'stage', version: 9, online: 12345, sessions: 13000 });
    expect(client.getCount('stage').online).toBe(12345);
    expect(seen).toEqual([12, 12345]);
    // The view of members is not kept: no room to join.
    expect(client.getMembers('stage')).toBeUndefined();

    ws.last.drop();
    await tick(60000);
    ws.last.open();
    const again = ws.last.sentOf('watch');
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ roomToken: 'rt-stage', mode: 'count' });

    h.unwatch();
    expect(ws.last.sentOf('unwatch')).toEqual([expect.objectContaining({ roomId: 'stage' })]);
  });

  it('rejects the roomId of a refused count watch', async () => {
    const { client, ws, errors } = setup();
    const h = client.watchCount('forged');
    await tick();
    ws.last.open();
    const w = ws.last.sentOf('watch')[0];
    ws.last.receive({ type: 'error', id: w.id, code: 'invalid_argument', message: 'bad token' });
    await expect(h.roomId).rejects.toMatchObject({ code: 'invalid_argument' });
    expect(errors).toHaveLength(1);
  });
});
