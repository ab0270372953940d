// Test doubles: a WebSocket whose server side the test plays, a fetch that
// answers from a handler, and a lifecycle the test drives.

/** A fake WebSocket "server": every socket the client opens lands in `sockets`. */
export function fakeWebSockets() {
  /** @type {FakeSocket[]} */
  const sockets = [];
  class FakeSocket {
    /** @param {string} url */
    constructor(url) {
      this.url = url;
      /** @type {any[]} */
      this.sent = [];
      this.readyState = 0;
      /** @type {{code?: number, reason?: string} | null} */
      this.closedWith = null;
      this.onopen = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      sockets.push(this);
    }
    /** @param {string} data */
    send(data) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(JSON.parse(data));
    }
    /** @param {number} [code] @param {string} [reason] */
    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
    // --- the server's side ---
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    /** @param {any} msg */
    receive(msg) {
      this.onmessage?.({ data: JSON.stringify(msg) });
    }
    /** the connection is lost (no close frame from the client) */
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
    /** the handshake fails: error then close, never open */
    fail() {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006 });
    }
    /** @param {string} type */
    sentOf(type) {
      return this.sent.filter((m) => m.type === type);
    }
    /** answers every join sent so far (not yet answered) with a snapshot */
    answerJoins(members = [], version = 1) {
      for (const m of this.sent) {
        if (m.type !== 'join' || m.answered) continue;
        m.answered = true;
        this.receive({
          type: 'joined',
          id: m.id,
          roomId: m.roomId,
          roomToken: `rt-${m.roomId}`,
          sessionToken: `st-${m.roomId}-${m.sessionId}`,
          version,
          members,
        });
      }
    }
  }
  return {
    sockets,
    WebSocket: FakeSocket,
    get last() {
      return sockets[sockets.length - 1];
    },
  };
}

/**
 * A fetch answering from handler(method, path, init) → {status, body, headers}.
 * @param {(req: {method: string, path: string, url: string, headers: Record<string,string>, body: any}) => any} handler
 */
export function fakeFetch(handler) {
  /** @type {any[]} */
  const calls = [];
  /** @param {string} url @param {any} init */
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    const req = {
      method: init.method || 'GET',
      path: u.pathname,
      url,
      query: Object.fromEntries(u.searchParams),
      headers: init.headers || {},
      body: init.body,
      keepalive: init.keepalive,
    };
    calls.push(req);
    const r = (await handler(req)) || { status: 404, body: { error: { code: 'not_found', message: 'no handler' } } };
    const status = r.status ?? 200;
    const text = r.body === undefined ? '' : JSON.stringify(r.body);
    const headers = new Map(Object.entries(r.headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
    return {
      status,
      ok: status >= 200 && status < 300,
      headers: { get: (/** @type {string} */ k) => headers.get(k.toLowerCase()) ?? null },
      text: async () => text,
      json: async () => JSON.parse(text),
    };
  };
  return { fetch, calls };
}

/** A lifecycle the test drives: emit('background' | 'active' | 'terminate'). */
export function fakeLifecycle(initial = 'active') {
  /** @type {Set<(s: any) => void>} */
  const subs = new Set();
  let state = initial;
  return {
    state: () => state,
    subscribe(/** @type {(s: any) => void} */ cb) {
      subs.add(cb);
      return () => subs.delete(cb);
    },
    /** @param {'active' | 'background' | 'terminate'} s */
    emit(s) {
      if (s !== 'terminate') state = s;
      for (const cb of [...subs]) cb(s);
    },
    get subscribers() {
      return subs.size;
    },
  };
}

/** @param {string} userId @param {Partial<import('../src/index').Member>} [o] */
export function member(userId, o = {}) {
  return { userId, online: true, lastDisconnected: 0, sessions: 1, ...o };
}
