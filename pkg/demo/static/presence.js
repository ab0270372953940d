// @ts-check
/**
 * PresenceClient: the JavaScript client of the presence service.
 *
 * One WebSocket (GET /v1/ws) for many rooms, reconnecting with exponential
 * backoff and jitter, resuming its sessions silently (every joined room is
 * joined again with the same sessionId, every watched room watched again),
 * and keeping a view of each room: the last snapshot (joined, watching,
 * sync) with the later presence events applied in version order. When
 * WebSockets are unavailable it falls back to HTTP heartbeats and polled
 * lists (with ETags). It follows the page's (or app's) lifecycle: hidden or
 * in the background, it leaves its rooms after a grace period and joins
 * them again when visible; on pagehide it ends its sessions with
 * navigator.sendBeacon.
 *
 * This file has no imports: it is served as is by the demo page
 * (pkg/demo embeds a copy; `go generate ./pkg/demo` refreshes it).
 */

/** @typedef {import("./index").Member} Member */
/** @typedef {import("./index").PresenceClientOptions} PresenceClientOptions */
/** @typedef {import("./index").JoinOptions} JoinOptions */
/** @typedef {import("./index").LifecycleAdapter} LifecycleAdapter */
/** @typedef {import("./index").LifecycleState} LifecycleState */
/** @typedef {import("./index").ConnectionStatus} ConnectionStatus */
/** @typedef {import("./index").UserPresence} UserPresence */

/** The room useGlobalPresence joins unless told otherwise (as in the apps we replace). */
export const GLOBAL_ROOM = 'app-global-room';

const DEFAULTS = {
  interval: 10000,
  hiddenGrace: 10000,
  backoffMin: 250,
  backoffMax: 10000,
  fallbackAfter: 3,
  wsRetryInterval: 60000,
  pollInterval: 5000,
  pingInterval: 20000,
  pongTimeout: 10000,
  leaveDelay: 0,
  stableAfter: 5000,
  gapTimeout: 5000,
};

// Join errors worth another try (the same as the Go client's).
const TRANSIENT_CODES = new Set(['unavailable', 'rate_limited', 'internal']);

// The most presence events a room holds ahead of its view (as the Go
// client): one more drops them all, and the view waits for a snapshot.
const MAX_HELD = 1000;

// Messages sent at once, then one per SEND_PACE ms: under the server's limit
// of 50 messages per second per socket, even when restoring 100 rooms.
const SEND_BURST = 25;
const SEND_PACE = 25;

/** An error answered by the service (HTTP status and error code, README: Errors). */
export class PresenceError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {number} [status]
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'PresenceError';
    this.code = code;
    this.status = status ?? 0;
  }
}

/**
 * A new random session id: crypto.randomUUID where there is one, else
 * crypto.getRandomValues, else Math.random (React Native without a crypto
 * polyfill; a session id needs to be unique, not secret).
 * @returns {string}
 */
export function newSessionId() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c && typeof c.randomUUID === 'function') {
    try {
      return c.randomUUID();
    } catch {
      // randomUUID exists but needs a secure context (http on a LAN address).
    }
  }
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') {
    c.getRandomValues(b);
  } else {
    for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * The members with the user `selfId` first, the others in the server's
 * order. Returns `members` itself when it is already so (or undefined).
 * @template {Member[] | undefined} T
 * @param {T} members
 * @param {string | undefined | null} selfId
 * @returns {T}
 */
export function ownFirst(members, selfId) {
  if (!members || !selfId) return members;
  const i = members.findIndex((m) => m.userId === selfId);
  if (i <= 0) return members;
  return /** @type {T} */ ([members[i], ...members.slice(0, i), ...members.slice(i + 1)]);
}

/**
 * "online", or "last seen 5 min ago" / "last seen 2 h ago" / "last seen
 * 3 d ago" / "last seen just now" for an offline member.
 * @param {Member} m
 * @param {number} [now]
 * @returns {string}
 */
export function lastSeen(m, now = Date.now()) {
  if (m.online) return 'online';
  if (!m.lastDisconnected) return 'offline';
  const s = Math.max(0, Math.round((now - m.lastDisconnected) / 1000));
  if (s < 45) return 'last seen just now';
  const min = Math.round(s / 60);
  if (min < 60) return `last seen ${min} min ago`;
  const h = Math.round(min / 60);
  if (h < 48) return `last seen ${h} h ago`;
  return `last seen ${Math.round(h / 24)} d ago`;
}

/**
 * The lifecycle of a browser page: hidden/visible (visibilitychange),
 * pagehide (terminate) and pageshow from the back/forward cache (active).
 * @param {any} [win]
 * @param {any} [doc]
 * @returns {LifecycleAdapter}
 */
export function browserLifecycle(win = /** @type {any} */ (globalThis).window, doc = /** @type {any} */ (globalThis).document) {
  const state = () => (doc && doc.visibilityState === 'hidden' ? 'background' : 'active');
  return {
    state,
    subscribe(onChange) {
      const onVisibility = () => onChange(state());
      const onPageHide = () => onChange('terminate');
      const onPageShow = (/** @type {any} */ e) => {
        if (e && e.persisted) onChange(state());
      };
      doc?.addEventListener('visibilitychange', onVisibility);
      win?.addEventListener('pagehide', onPageHide);
      win?.addEventListener('pageshow', onPageShow);
      return () => {
        doc?.removeEventListener('visibilitychange', onVisibility);
        win?.removeEventListener('pagehide', onPageHide);
        win?.removeEventListener('pageshow', onPageShow);
      };
    },
  };
}

/**
 * The lifecycle of a React Native app: pass `AppState` from 'react-native'.
 * "active" is active; "background" and "inactive" start the grace period.
 * @param {{ currentState?: string | null, addEventListener(type: 'change', cb: (s: string) => void): any }} AppState
 * @returns {LifecycleAdapter}
 */
export function appStateLifecycle(AppState) {
  const map = (/** @type {string | null | undefined} */ s) => (s == null || s === 'active' ? 'active' : 'background');
  return {
    state: () => map(AppState.currentState),
    subscribe(onChange) {
      const sub = AppState.addEventListener('change', (s) => onChange(map(s)));
      return () => {
        if (sub && typeof sub.remove === 'function') sub.remove();
      };
    },
  };
}

/** @param {unknown} a @param {unknown} b */
function sameJSON(a, b) {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** @param {Member} a @param {Member} b */
function sameMember(a, b) {
  return (
    a === b ||
    (a.userId === b.userId &&
      a.online === b.online &&
      a.lastDisconnected === b.lastDisconnected &&
      a.sessions === b.sessions &&
      a.name === b.name &&
      a.image === b.image &&
      sameJSON(a.data, b.data))
  );
}

/** @param {string | null | undefined} token */
function jwtSubject(token) {
  if (!token) return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const pad = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const json = typeof atob === 'function' ? atob(pad) : /** @type {any} */ (globalThis).Buffer.from(pad, 'base64').toString('binary');
    const sub = JSON.parse(json).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The room order (the Go one is presence.CompareMembers): online members
 * first, by their online sequence (the order they came online), then
 * offline members, most recently disconnected first; ties by userId, in
 * UTF-8 byte order as the server orders equal scores. Negative if a comes
 * first.
 * @param {Member} a
 * @param {Member} b
 * @param {number} seqA online sequence of a (not read if a is offline)
 * @param {number} seqB online sequence of b
 * @returns {number}
 */
function compareMembers(a, b, seqA, seqB) {
  if (a.online !== b.online) return a.online ? -1 : 1;
  if (a.online && seqA !== seqB) return seqA - seqB;
  if (!a.online && a.lastDisconnected !== b.lastDisconnected) return b.lastDisconnected - a.lastDisconnected;
  return compareIds(a.userId, b.userId);
}

/**
 * Compares two strings by code point, which is their UTF-8 byte order (`<`
 * compares UTF-16 code units: U+E000..U+FFFF would sort after U+10000).
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
function compareIds(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = /** @type {number} */ (a.codePointAt(i));
    const y = /** @type {number} */ (b.codePointAt(i));
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/**
 * One room as the client knows it: the session it holds there (if joined),
 * the watch (if watched), and the view of its members.
 */
class Room {
  /** @param {string} roomId */
  constructor(roomId) {
    this.roomId = roomId;
    // --- the session (joined rooms) ---
    this.holders = 0; // join handles not yet released
    /** @type {string | null} */
    this.sessionId = null;
    this.interval = 0;
    /** @type {unknown} */
    this.data = undefined;
    this.dataDirty = false; // HTTP mode: data not yet sent by a heartbeat
    /** @type {string | undefined} */
    this.userId = undefined;
    /** @type {string | undefined} */
    this.name = undefined;
    /** @type {string | undefined} */
    this.image = undefined;
    this.joined = false; // the server confirmed the session (joined / heartbeat)
    this.ended = false; // the session was ended by someone else or refused: not rejoined
    /** @type {PresenceError | null} */
    this.error = null;
    this.roomToken = '';
    this.sessionToken = '';
    /** @type {any} */
    this.leaveTimer = null;
    /** @type {any} */
    this.retryTimer = null;
    this.retries = 0;
    /** @type {any} */
    this.heartbeatTimer = null;
    this.hbInFlight = false;
    this.hbAgain = false;
    // --- the watch ---
    this.watchers = 0;
    this.watchToken = '';
    // --- the view ---
    /** @type {number | null} */
    this.version = null;
    /** @type {Member[]} */
    this.members = [];
    /** @type {Map<string, number>} */
    this.seq = new Map();
    this.next = 0;
    /** @type {Map<number, any>} events ahead of the view, by version */
    this.ahead = new Map();
    /** @type {any} */
    this.gapTimer = null;
    /** @type {readonly Member[] | undefined} the published list (a new array only when it changed) */
    this.snapshot = undefined;
    this.etag = '';
    /** @type {Set<(m: readonly Member[] | undefined) => void>} */
    this.listeners = new Set();
  }

  get held() {
    return this.holders > 0 && !this.ended;
  }

  get watched() {
    return this.watchers > 0;
  }

  /** the room needs the server (a session to keep, or events to follow) */
  get inUse() {
    return this.held || this.watched;
  }

  /**
   * Replaces the view by a snapshot (in the server's order), whatever its
   * version: the held events at or below it are dropped, the ones right
   * after it applied.
   * @param {number} version
   * @param {Member[]} members
   */
  replace(version, members) {
    this.version = version;
    this.members = members.slice();
    this.seq = new Map();
    this.next = 0;
    for (const m of this.members) if (m.online) this.seq.set(m.userId, ++this.next);
    for (const v of this.ahead.keys()) if (v <= version) this.ahead.delete(v);
    this.drain();
  }

  /**
   * Takes a presence event (the rule of the Go client, pkg/client/doc.go):
   * applied now if it is the next version (then the held ones that follow
   * it), held if it is ahead (until the missing ones or a snapshot come),
   * ignored if the view has it already (older, or a version held already)
   * or there is no view yet (the snapshot has it). When MAX_HELD events are
   * held, one more drops them all (and itself): a snapshot will come.
   * @param {any} msg
   */
  event(msg) {
    const v = Number(msg.version);
    if (this.version === null || !Number.isSafeInteger(v)) return;
    if (v <= this.version || this.ahead.has(v)) return;
    if (v > this.version + 1 && this.ahead.size >= MAX_HELD) {
      this.ahead.clear();
      return;
    }
    this.ahead.set(v, msg);
    this.drain();
  }

  /**
   * Takes a batch (a storm's events of versions fromVersion..version
   * coalesced: the last change of each user, in version order): applied
   * when it starts at the next version, held while it is ahead, ignored if
   * the view has its last version already.
   * @param {any} msg
   */
  batch(msg) {
    const from = Number(msg.fromVersion);
    const to = Number(msg.version);
    if (this.version === null || !Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < from) return;
    if (to <= this.version || this.ahead.has(from)) return;
    if (from > this.version + 1) {
      if (this.ahead.size >= MAX_HELD) {
        this.ahead.clear();
        return;
      }
      this.ahead.set(from, msg);
      return;
    }
    // At the next version (or, never from the server, inside the batch:
    // each member ends right).
    this.ahead.set(this.version + 1, msg);
    this.drain();
  }

  drain() {
    if (this.version === null) return;
    for (let e = this.ahead.get(this.version + 1); e; e = this.ahead.get(this.version + 1)) {
      this.ahead.delete(this.version + 1);
      if (e.type === 'batch') {
        this.applyMany(Array.isArray(e.changes) ? e.changes : []);
        this.version = Number(e.version);
        continue;
      }
      this.version++;
      this.apply(e.event, e.member);
    }
  }

  /**
   * Applies the event of the next version (drain moved the version): a
   * reset empties the view; an unknown kind or a missing member changes no
   * member.
   * @param {string} kind
   * @param {Member | undefined} m
   */
  apply(kind, m) {
    if (kind === 'reset') {
      this.members = [];
      this.seq = new Map();
      return;
    }
    if (!m || typeof m.userId !== 'string') return;
    const i = this.members.findIndex((x) => x.userId === m.userId);
    if (kind === 'remove') {
      if (i >= 0) this.members.splice(i, 1);
      this.seq.delete(m.userId);
      return;
    }
    if (kind !== 'join' && kind !== 'leave' && kind !== 'update') return;
    const wasOnline = i >= 0 && this.members[i].online;
    if (i >= 0) this.members[i] = m;
    else this.members.push(m);
    if (!m.online) this.seq.delete(m.userId);
    else if (kind === 'join' || !wasOnline) this.seq.set(m.userId, ++this.next);
    this.sort();
  }

  /**
   * Applies a batch's changes as apply does one by one, finding members by
   * an index and sorting once: a storm's batch of hundreds of changes in a
   * room of thousands costs one sort, not one scan and sort per change.
   * @param {any[]} changes
   */
  applyMany(changes) {
    /** @type {(Member | null)[]} */
    const members = this.members;
    const index = new Map(members.map((x, i) => [x.userId, i]));
    let removed = false;
    for (const c of changes) {
      const kind = c?.event;
      const m = c?.member;
      if (kind === 'reset') {
        members.length = 0;
        index.clear();
        this.seq = new Map();
        removed = false;
        continue;
      }
      if (!m || typeof m.userId !== 'string') continue;
      const i = index.get(m.userId);
      if (kind === 'remove') {
        if (i !== undefined) {
          members[i] = null;
          index.delete(m.userId);
          removed = true;
        }
        this.seq.delete(m.userId);
        continue;
      }
      if (kind !== 'join' && kind !== 'leave' && kind !== 'update') continue;
      const wasOnline = i !== undefined && /** @type {Member} */ (members[i]).online;
      if (i !== undefined) members[i] = m;
      else {
        index.set(m.userId, members.length);
        members.push(m);
      }
      if (!m.online) this.seq.delete(m.userId);
      else if (kind === 'join' || !wasOnline) this.seq.set(m.userId, ++this.next);
    }
    if (removed) this.members = /** @type {Member[]} */ (members.filter((x) => x !== null));
    this.sort();
  }

  // The room order (compareMembers), online members by the order this view
  // saw them come online.
  sort() {
    const seq = this.seq;
    this.members.sort((a, b) => compareMembers(a, b, seq.get(a.userId) ?? 0, seq.get(b.userId) ?? 0));
  }

  /** Publishes the view if it changed; reports whether it did. */
  publish() {
    const prev = this.snapshot;
    const next = this.version === null ? undefined : this.members;
    if (prev === next) return false;
    if (prev && next && prev.length === next.length && prev.every((m, i) => sameMember(m, next[i]))) return false;
    if (!prev && !next) return false;
    this.snapshot = next ? Object.freeze(next.slice()) : undefined;
    return true;
  }

  clearView() {
    this.version = null;
    this.members = [];
    this.seq = new Map();
    this.ahead.clear();
    this.etag = '';
  }
}

/**
 * A client of the presence service. Creating one opens nothing: the socket
 * opens with the first join or watch and closes when no room is in use.
 */
/**
 * The pages of a list, from the first to the last, following `next`.
 * @param {(cursor: string | undefined) => Promise<any>} page
 */
async function* pagesOf(page) {
  let cursor;
  for (;;) {
    const l = await page(cursor);
    yield l;
    if (!l.next) return;
    cursor = l.next;
  }
}

/**
 * A whole list read page by page at one version: started again when a
 * page's version is not the first's, at most 5 times.
 * @param {() => AsyncGenerator<any>} read
 */
async function allOf(read) {
  for (let attempt = 0; attempt < 5; attempt++) {
    let out = null;
    let changed = false;
    for await (const l of read()) {
      if (!out) {
        out = { roomId: l.roomId, version: l.version, members: [...l.members] };
      } else if (l.version !== out.version) {
        changed = true;
        break;
      } else {
        out.members.push(...l.members);
      }
    }
    if (!changed) return out;
  }
  throw new PresenceError('unavailable', 'the room changed while it was read page by page');
}

export class PresenceClient {
  /** @param {PresenceClientOptions} [options] */
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...options };
    const loc = /** @type {any} */ (globalThis).location;
    const url = options.url ?? (loc && loc.origin && loc.origin !== 'null' ? loc.origin : '');
    if (!url) throw new TypeError('PresenceClient: options.url is required outside a browser page');
    /** @type {string} base URL of the node, without a trailing slash */
    this.url = String(url).replace(/\/+$/, '');
    this.userId = options.userId;
    this.name = options.name;
    this.image = options.image;
    /** privacy flags sent with every room's join (undefined: keep the member's setting) */
    this._privacy = { invisible: options.invisible, hideLastSeen: options.hideLastSeen };
    this._privacyGen = 0;
    this._getToken = options.getToken;
    this._opts = o;
    const g = /** @type {any} */ (globalThis);
    /** @type {any} */
    this._WebSocket = options.WebSocket === undefined ? g.WebSocket : options.WebSocket;
    /** @type {typeof fetch} */
    this._fetch = options.fetch ?? ((...a) => g.fetch(...a));
    /** @type {((url: string, body: string) => boolean) | null} */
    this._sendBeacon =
      options.sendBeacon ?? (g.navigator && typeof g.navigator.sendBeacon === 'function' ? (u, b) => g.navigator.sendBeacon(u, b) : null);
    this._random = options.random ?? Math.random;
    /** @type {LifecycleAdapter | null} */
    this._lifecycle =
      options.lifecycle === false || options.lifecycle === null
        ? null
        : options.lifecycle ?? (g.document && g.window ? browserLifecycle(g.window, g.document) : null);
    this._onError = options.onError ?? null;

    /** @type {Map<string, Room>} */
    this._rooms = new Map();
    /** @type {Array<{token: string, refs: number, room: Room | null, waiters: Array<{resolve: (id: string) => void, reject: (e: Error) => void}>}>} */
    this._watchList = [];
    /** @type {Map<string, {refs: number, state: UserPresence | undefined}>} watched users */
    this._users = new Map();
    /** @type {Map<string, any>} rooms watched in count mode, by room token */
    this._counts = new Map();
    /** @type {Set<() => void>} */
    this._userListeners = new Set();
    /** @type {Set<(s: ConnectionStatus) => void>} */
    this._statusListeners = new Set();
    /** @type {ConnectionStatus} */
    this._status = 'idle';
    /** @type {'ws' | 'http'} */
    this._mode = this._WebSocket ? 'ws' : 'http';
    this._suspended = false;
    this._active = false; // lifecycle and timers are attached
    /** @type {(() => void) | null} */
    this._unsubscribeLifecycle = null;
    /** @type {any} */
    this._graceTimer = null;
    /** @type {any} */
    this._idleTimer = null;

    // WebSocket state
    /** @type {any} */
    this._ws = null;
    this._wsOpen = false;
    this._gen = 0;
    this._attempts = 0; // reconnect attempts since the last stable socket
    this._wsFailures = 0; // sockets in a row that never opened
    /** @type {any} */
    this._reconnectTimer = null;
    /** @type {any} */
    this._pingTimer = null;
    /** @type {any} */
    this._pongTimer = null;
    this._openedAt = 0;
    this._nextId = 0;
    /** @type {Map<number, {type: string, room?: Room, token?: string}>} */
    this._pending = new Map();
    /** @type {string[]} */
    this._outbox = [];
    this._tokens = SEND_BURST;
    /** @type {any} */
    this._sendTimer = null;
    this._lastRefill = 0;
    /** @type {string | undefined} */
    this._tokenSubject = undefined;

    // HTTP fallback state
    /** @type {any} */
    this._pollTimer = null;
    /** @type {any} */
    this._probeTimer = null;
    /** @type {any} */
    this._probe = null;

    this._onOnline = () => this._kick();
  }

  // ------------------------------------------------------------------ API

  /** The connection status. @returns {ConnectionStatus} */
  get status() {
    return this._status;
  }

  /** "ws" or "http" (the fallback). @returns {'ws' | 'http'} */
  get transport() {
    return this._mode;
  }

  /**
   * Calls listener with every new connection status; returns the
   * unsubscribe function.
   * @param {(s: ConnectionStatus) => void} listener
   */
  onStatus(listener) {
    this._statusListeners.add(listener);
    return () => this._statusListeners.delete(listener);
  }

  /**
   * Joins a room with a session (kept alive by the server while the socket
   * is open, by heartbeats in the HTTP fallback). Joins of one room share
   * one session (the server keeps one session per socket and room): the
   * first join's sessionId is used, and the session ends when the last
   * handle is released. Releasing is deferred by `leaveDelay` (0 ms: to
   * the next task), so an unmount and mount in one go (React Strict Mode,
   * a route change) keeps the session with no leave and join.
   * @param {string} roomId
   * @param {JoinOptions} [opts]
   */
  join(roomId, opts = {}) {
    if (typeof roomId !== 'string' || roomId === '') throw new TypeError('join: roomId must be a non-empty string');
    const userId = opts.userId ?? this.userId;
    const prev = this._rooms.get(roomId);
    if (prev && prev.leaveTimer && (prev.ended || prev.sessionId !== (opts.sessionId ?? prev.sessionId) || prev.userId !== userId)) {
      // Released, and now joined as another session or user (or its
      // session was ended): end the old session first (the leave is sent
      // before the new join).
      clearTimeout(prev.leaveTimer);
      prev.leaveTimer = null;
      this._leaveNow(prev);
    }
    const room = this._room(roomId);
    // Released but not yet left (Strict Mode's second mount, a route
    // change): the session goes on as it is.
    const resumed = !!room.leaveTimer;
    if (room.leaveTimer) {
      clearTimeout(room.leaveTimer);
      room.leaveTimer = null;
    }
    const first = room.holders === 0;
    room.holders++;
    if ((first && !resumed) || room.ended) {
      // A new session (also for a room whose session the server ended:
      // a new join is the app asking again).
      room.sessionId = opts.sessionId ?? newSessionId();
      room.userId = userId;
      room.name = opts.name ?? this.name;
      room.image = opts.image ?? this.image;
      room.interval = opts.interval ?? this._opts.interval;
      room.data = opts.data;
      room.dataDirty = opts.data !== undefined;
      room.ended = false;
      room.error = null;
      room.retries = 0;
      this._activate();
      if (this._mode === 'ws') this._sendJoin(room);
    } else {
      // Another holder: a new name or image updates the profile, new data
      // the data.
      const name = opts.name ?? this.name;
      const image = opts.image ?? this.image;
      if ((name !== undefined && name !== room.name) || (image !== undefined && image !== room.image)) {
        room.name = name;
        room.image = image;
        this._sendJoin(room);
      }
      if (opts.data !== undefined) this.update(roomId, opts.data);
    }
    let released = false;
    const client = this;
    return {
      roomId,
      get sessionId() {
        return room.sessionId ?? '';
      },
      /** Releases this handle: the session ends when no handle holds it. */
      leave() {
        if (released) return;
        released = true;
        client._release(room);
      },
      /** @param {unknown} data */
      update(data) {
        if (!released) client.update(roomId, data);
      },
    };
  }

  /**
   * Ends the session in a room now, whoever holds it.
   * @param {string} roomId
   */
  leave(roomId) {
    const room = this._rooms.get(roomId);
    if (!room || room.holders === 0) return;
    if (room.leaveTimer) clearTimeout(room.leaveTimer);
    room.leaveTimer = null;
    room.holders = 0;
    this._leaveNow(room);
  }

  /**
   * Sets this client's privacy in every room it is in and joins later:
   * `invisible` (offline to everyone else; turning invisible is a leave to
   * them, visible again a join) and `hideLastSeen` (the others see
   * lastDisconnected 0). An undefined field keeps its setting.
   * @param {{ invisible?: boolean, hideLastSeen?: boolean }} privacy
   */
  setPrivacy(privacy) {
    for (const k of /** @type {const} */ (['invisible', 'hideLastSeen'])) {
      const v = privacy?.[k];
      if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`setPrivacy: ${k} must be a boolean`);
      if (v !== undefined) this._privacy[k] = v;
    }
    this._privacyGen++;
    for (const room of this._rooms.values()) {
      if (room.holders > 0) this._sendJoin(room);
    }
  }

  /** The privacy flags this client sends: { invisible?, hideLastSeen? }. */
  get privacy() {
    return { ...this._privacy };
  }

  /** @param {Record<string, any>} msg */
  _withPrivacy(msg) {
    if (this._privacy.invisible !== undefined) msg.invisible = this._privacy.invisible;
    if (this._privacy.hideLastSeen !== undefined) msg.hideLastSeen = this._privacy.hideLastSeen;
  }

  /**
   * Replaces this client's member data in a joined room (kept for rejoins).
   * @param {string} roomId
   * @param {unknown} data
   */
  update(roomId, data) {
    const room = this._rooms.get(roomId);
    if (!room || room.holders === 0) throw new Error(`update: room ${JSON.stringify(roomId)} is not joined`);
    if (data === undefined) data = null;
    if (sameJSON(room.data, data)) return; // (data not yet sent goes with the next join or heartbeat)
    room.data = data;
    room.dataDirty = true;
    if (!room.held || this._suspended) return;
    if (this._mode === 'ws') {
      if (this._wsOpen && room.joined) this._send({ type: 'update', roomId, data }, { type: 'update', room });
    } else if (this._status === 'http') {
      this._httpHeartbeat(room, true);
    }
  }

  /**
   * Follows a room without being present in it (the room token comes from
   * a join, a heartbeat or your backend). Returns a handle whose roomId
   * promise resolves with the room's id.
   * @param {string} roomToken
   */
  watch(roomToken) {
    if (typeof roomToken !== 'string' || roomToken === '') throw new TypeError('watch: roomToken must be a non-empty string');
    let w = this._watchList.find((x) => x.token === roomToken);
    const roomId = new Promise((resolve, reject) => {
      if (w) {
        w.refs++;
        if (w.room) resolve(w.room.roomId);
        else w.waiters.push({ resolve, reject });
      } else {
        w = { token: roomToken, refs: 1, room: null, waiters: [{ resolve, reject }] };
        this._watchList.push(w);
      }
    });
    roomId.catch(() => {}); // a refusal is also reported to onError
    const entry = /** @type {any} */ (w);
    if (entry.refs === 1 && !entry.room) {
      this._activate();
      if (this._mode === 'ws') this._sendWatch(entry);
    }
    let released = false;
    return {
      roomId,
      unwatch: () => {
        if (released) return;
        released = true;
        this._unwatch(entry);
      },
    };
  }

  /**
   * Follows a room in count mode: its counts only (online members, live
   * sessions), at most one update per second while the room changes, the
   * last within a second of the last change: a room of any size costs the
   * same. onChange, when given, is called with each new count. Returns a
   * handle whose roomId promise resolves with the room's id, and whose
   * unwatch() stops. Needs the WebSocket (no counts in the HTTP fallback).
   * Watching the same room in count mode and with watch() on one client
   * is not supported (the server keeps one mode per room and socket).
   * @param {string} roomToken
   * @param {(count: RoomCount) => void} [onChange]
   */
  watchCount(roomToken, onChange) {
    if (typeof roomToken !== 'string' || roomToken === '') throw new TypeError('watchCount: roomToken must be a non-empty string');
    let c = this._counts.get(roomToken);
    const fresh = !c;
    if (!c) {
      c = { token: roomToken, refs: 0, roomId: null, count: undefined, listeners: new Set(), waiters: [] };
      this._counts.set(roomToken, c);
    }
    const entry = c;
    entry.refs++;
    const roomId = new Promise((resolve, reject) => {
      if (entry.roomId) resolve(entry.roomId);
      else entry.waiters.push({ resolve, reject });
    });
    roomId.catch(() => {}); // a refusal is also reported to onError
    const listener = onChange ? (/** @type {RoomCount} */ n) => onChange(n) : null;
    if (listener) entry.listeners.add(listener);
    if (fresh) {
      this._activate();
      this._sendWatchCount(entry);
    }
    let released = false;
    return {
      roomId,
      unwatch: () => {
        if (released) return;
        released = true;
        if (listener) entry.listeners.delete(listener);
        if (--entry.refs > 0) return;
        this._counts.delete(entry.token);
        if (entry.roomId && !this._countWatched(entry.roomId) && this._mode === 'ws' && this._wsOpen) {
          this._send({ type: 'unwatch', roomId: entry.roomId }, { type: 'unwatch' });
        }
        this._maybeIdle();
      },
    };
  }

  /**
   * The last known counts of a room watched in count mode (undefined until
   * known).
   * @param {string} roomId
   * @returns {RoomCount | undefined}
   */
  getCount(roomId) {
    for (const c of this._counts.values()) if (c.roomId === roomId && c.count) return c.count;
    return undefined;
  }

  /** @param {any} c */
  _sendWatchCount(c) {
    if (this._suspended || this._mode !== 'ws' || !this._wsOpen) return;
    this._send({ type: 'watch', roomToken: c.token, mode: 'count' }, { type: 'watchCount', token: c.token });
  }

  /** @param {string} roomId whether another count watch follows the room */
  _countWatched(roomId) {
    for (const c of this._counts.values()) if (c.roomId === roomId) return true;
    return false;
  }

  /**
   * Takes counts (a count frame, or the watching answer): newer than the
   * known ones, or any after a (re)watch.
   * @param {any} c
   * @param {any} m
   * @param {boolean} [fresh]
   */
  _setCount(c, m, fresh = false) {
    const n = { roomId: String(m.roomId), version: Number(m.version), online: Number(m.online), sessions: Number(m.sessions) };
    if (!fresh && c.count && n.version <= c.count.version && n.online === c.count.online && n.sessions === c.count.sessions) return;
    c.count = n;
    for (const l of c.listeners) {
      try {
        l(n);
      } catch (e) {
        this._error(/** @type {any} */ (e));
      }
    }
  }

  /**
   * @param {string | undefined} token
   * @param {PresenceError} err
   */
  _countRefused(token, err) {
    const c = token === undefined ? undefined : this._counts.get(token);
    if (!c || TRANSIENT_CODES.has(err.code)) return;
    this._counts.delete(c.token);
    for (const x of c.waiters) x.reject(err);
    c.waiters = [];
    this._maybeIdle();
  }

  /**
   * Follows users of the org across all its rooms ("friends online"): each
   * user is online while it has a live session in any room. onChange, when
   * given, is called with the states of these users (in the order given)
   * whenever one of them changes. Returns a handle whose unwatch() stops
   * (a user watched by several handles is followed until the last one
   * stops). At most 1000 users per client (the server's limit per socket).
   * Needs the WebSocket: in the HTTP fallback the states are read with
   * each poll.
   * @param {string[]} userIds
   * @param {(users: UserPresence[]) => void} [onChange]
   */
  watchUsers(userIds, onChange) {
    if (!Array.isArray(userIds) || userIds.length === 0 || userIds.some((u) => typeof u !== 'string' || u === '')) {
      throw new TypeError('watchUsers: userIds must be a non-empty array of non-empty strings');
    }
    const ids = [...new Set(userIds)];
    const fresh = [];
    for (const u of ids) {
      const e = this._users.get(u);
      if (e) e.refs++;
      else {
        this._users.set(u, { refs: 1, state: undefined });
        fresh.push(u);
      }
    }
    let last = '';
    const listener = () => {
      if (!onChange) return;
      const states = this.getUsers(userIds);
      const key = JSON.stringify(states);
      if (key !== last) {
        last = key;
        onChange(states);
      }
    };
    this._userListeners.add(listener);
    this._activate();
    if (fresh.length) this._sendWatchUsers(fresh);
    let released = false;
    return {
      unwatch: () => {
        if (released) return;
        released = true;
        this._userListeners.delete(listener);
        const gone = [];
        for (const u of ids) {
          const e = this._users.get(u);
          if (e && --e.refs === 0) {
            this._users.delete(u);
            gone.push(u);
          }
        }
        if (gone.length && this._mode === 'ws' && this._wsOpen) this._send({ type: 'unwatchUsers', userIds: gone }, { type: 'unwatchUsers' });
        this._maybeIdle();
      },
    };
  }

  /**
   * The last known state of each of these users (undefined for a user not
   * watched or not known yet).
   * @param {string[]} userIds
   * @returns {Array<UserPresence | undefined>}
   */
  getUsers(userIds) {
    return userIds.map((u) => this._users.get(u)?.state);
  }

  /**
   * Calls listener whenever a watched user's state changes; returns the
   * unsubscribe function (for useSyncExternalStore).
   * @param {() => void} listener
   */
  subscribeUsers(listener) {
    this._userListeners.add(listener);
    return () => this._userListeners.delete(listener);
  }

  /**
   * Calls listener with the room's members whenever they change (not on
   * heartbeats, nor on events that change nothing). Returns the
   * unsubscribe function.
   * @param {string} roomId
   * @param {(members: readonly Member[] | undefined) => void} listener
   */
  subscribe(roomId, listener) {
    const room = this._room(roomId);
    room.listeners.add(listener);
    return () => {
      room.listeners.delete(listener);
      this._gc(room);
    };
  }

  /**
   * The room's members (the same array until they change), or undefined
   * before the first snapshot.
   * @param {string} roomId
   * @returns {readonly Member[] | undefined}
   */
  getMembers(roomId) {
    return this._rooms.get(roomId)?.snapshot;
  }

  /**
   * What the client knows of a room.
   * @param {string} roomId
   */
  getRoom(roomId) {
    const r = this._rooms.get(roomId);
    if (!r) return undefined;
    return {
      roomId,
      version: r.version,
      members: r.snapshot,
      joined: r.joined,
      ended: r.ended,
      error: r.error,
      sessionId: r.sessionId,
      roomToken: r.roomToken,
      sessionToken: r.sessionToken,
    };
  }

  /**
   * The user this client is in a room: the join's userId, the client's
   * userId, or the `sub` of the last token.
   * @param {string} [roomId]
   */
  selfId(roomId) {
    const r = roomId ? this._rooms.get(roomId) : undefined;
    return r?.userId ?? this.userId ?? this._tokenSubject;
  }

  /** Whether requests carry a token (auth on). */
  get hasAuth() {
    return typeof this._getToken === 'function';
  }

  /**
   * Ends every session of this client now and closes the socket: a close
   * frame ends the sessions on the server; without an open socket (or in
   * the HTTP fallback) they are ended with POST /v1/disconnect. The rooms
   * are forgotten (subscribers get undefined); the client stays usable: a
   * later join opens a new socket.
   * @returns {Promise<void>}
   */
  async close() {
    for (const room of this._rooms.values()) {
      if (room.leaveTimer) clearTimeout(room.leaveTimer);
      room.leaveTimer = null;
    }
    const tokens = this._tokensOffSocket();
    this._teardown('closed by client');
    for (const room of this._rooms.values()) {
      this._resetRoom(room);
      room.holders = 0;
      room.watchers = 0;
      room.clearView();
      this._notify(room);
    }
    for (const w of this._watchList) for (const x of w.waiters) x.reject(new PresenceError('closed', 'the client was closed'));
    this._watchList = [];
    for (const room of [...this._rooms.values()]) this._gc(room);
    this._suspended = false;
    this._mode = this._WebSocket ? 'ws' : 'http';
    this._wsFailures = 0;
    this._attempts = 0;
    this._deactivate();
    this._setStatus('idle');
    await Promise.all(tokens.map((t) => this._disconnectHttp(t).catch(() => {})));
  }

  /**
   * Signs the user out of presence: POST /v1/signout ends all of the
   * user's sessions in every room of its org at once (other tabs and
   * devices too; they do not rejoin), then closes this client.
   * @param {{ forget?: boolean }} [opts]
   * @returns {Promise<{ rooms: number }>}
   */
  async signOut(opts = {}) {
    let rooms = 0;
    try {
      const users = new Set();
      if (!this.hasAuth) {
        if (this.userId) users.add(this.userId);
        for (const r of this._rooms.values()) if (r.userId && r.holders > 0) users.add(r.userId);
      }
      const q = opts.forget ? 'forget=true' : '';
      if (this.hasAuth || users.size === 0) {
        rooms = (await this.api.signOut(opts)).rooms ?? 0;
      } else {
        for (const u of users) {
          const res = await this._request('POST', `/v1/signout?userId=${encodeURIComponent(u)}${q ? '&' + q : ''}`);
          rooms += res?.rooms ?? 0;
        }
      }
    } finally {
      await this.close();
    }
    return { rooms };
  }

  /**
   * The HTTP API, one call per endpoint (named after the Convex presence
   * component's functions where there is one).
   */
  get api() {
    const c = this;
    const seg = encodeURIComponent;
    const qs = (/** @type {Record<string, any>} */ q) => {
      const p = Object.entries(q)
        .filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => `${seg(k)}=${seg(String(v))}`);
      return p.length ? '?' + p.join('&') : '';
    };
    return {
      /** POST /v1/heartbeat */
      heartbeat: (/** @type {any} */ body) => c._request('POST', '/v1/heartbeat', body),
      /**
       * GET /v1/list (no token needed: the room token is the capability);
       * `cursor`: a page's `next`, for the page after it
       */
      list: (/** @type {string} */ roomToken, /** @type {{limit?: number, cursor?: string}} */ o = {}) =>
        c._request('GET', `/v1/list${qs({ roomToken, limit: o.limit, cursor: o.cursor })}`, undefined, { auth: false }),
      /**
       * GET /v1/list page by page, from the first page to the last (an async
       * iterator of pages). A page's `version` differs from the first's when
       * the room changed in between.
       */
      pages: (/** @type {string} */ roomToken, /** @type {{limit?: number}} */ o = {}) =>
        pagesOf((cursor) => c.api.list(roomToken, { limit: o.limit, cursor })),
      /**
       * The whole list of a room, read page by page (`limit` a page, default
       * 1000) at one version: started again when the room changed, at most 5
       * times (then it rejects).
       */
      listAll: (/** @type {string} */ roomToken, /** @type {{limit?: number}} */ o = {}) =>
        allOf(() => c.api.pages(roomToken, { limit: o.limit ?? 1000 })),
      /** POST /v1/disconnect */
      disconnect: (/** @type {string} */ sessionToken) => c._disconnectHttp(sessionToken),
      /** POST /v1/signout */
      signOut: (/** @type {{forget?: boolean, userId?: string}} */ o = {}) =>
        c._request('POST', `/v1/signout${qs({ forget: o.forget ? 'true' : undefined, userId: o.userId })}`),
      /** GET /v1/users/{userId}/presence */
      userPresence: (/** @type {string} */ userId) => c._request('GET', `/v1/users/${seg(userId)}/presence`),
      /** GET /v1/users/{userId}/rooms */
      listUser: (/** @type {string} */ userId, /** @type {{onlineOnly?: boolean, limit?: number}} */ o = {}) =>
        c._request('GET', `/v1/users/${seg(userId)}/rooms${qs({ onlineOnly: o.onlineOnly, limit: o.limit })}`),
      /** GET /v1/rooms/{roomId}/members; `cursor`: a page's `next` */
      listRoom: (
        /** @type {string} */ roomId,
        /** @type {{onlineOnly?: boolean, limit?: number, cursor?: string}} */ o = {},
      ) =>
        c._request(
          'GET',
          `/v1/rooms/${seg(roomId)}/members${qs({ onlineOnly: o.onlineOnly, limit: o.limit, cursor: o.cursor })}`,
        ),
      /** GET /v1/rooms/{roomId}/members page by page (as `pages`) */
      roomPages: (/** @type {string} */ roomId, /** @type {{onlineOnly?: boolean, limit?: number}} */ o = {}) =>
        pagesOf((cursor) => c.api.listRoom(roomId, { onlineOnly: o.onlineOnly, limit: o.limit, cursor })),
      /** All members of a room by id, page by page (as `listAll`) */
      listRoomAll: (/** @type {string} */ roomId, /** @type {{onlineOnly?: boolean, limit?: number}} */ o = {}) =>
        allOf(() => c.api.roomPages(roomId, { onlineOnly: o.onlineOnly, limit: o.limit ?? 1000 })),
      /** GET /v1/rooms/{roomId}/count */
      count: (/** @type {string} */ roomId) => c._request('GET', `/v1/rooms/${seg(roomId)}/count`),
      /** PUT /v1/rooms/{roomId}/members/{userId}/data */
      updateRoomUser: (/** @type {string} */ roomId, /** @type {string} */ userId, /** @type {unknown} */ data) =>
        c._request('PUT', `/v1/rooms/${seg(roomId)}/members/${seg(userId)}/data`, data === undefined ? null : data),
      /** DELETE /v1/rooms/{roomId}/members/{userId} */
      removeRoomUser: (/** @type {string} */ roomId, /** @type {string} */ userId) =>
        c._request('DELETE', `/v1/rooms/${seg(roomId)}/members/${seg(userId)}`),
      /** DELETE /v1/rooms/{roomId} (admin) */
      removeRoom: (/** @type {string} */ roomId) => c._request('DELETE', `/v1/rooms/${seg(roomId)}`),
    };
  }

  // ------------------------------------------------------------ rooms

  /** @param {string} roomId */
  _room(roomId) {
    let r = this._rooms.get(roomId);
    if (!r) {
      r = new Room(roomId);
      this._rooms.set(roomId, r);
    }
    return r;
  }

  /** @param {Room} room */
  _release(room) {
    if (room.holders === 0) return;
    room.holders--;
    if (room.holders > 0) return;
    if (room.leaveTimer) clearTimeout(room.leaveTimer);
    room.leaveTimer = setTimeout(() => {
      room.leaveTimer = null;
      if (room.holders === 0) this._leaveNow(room);
    }, this._opts.leaveDelay);
  }

  /**
   * Ends the room's session now (leave message, or disconnect over HTTP).
   * @param {Room} room
   */
  _leaveNow(room) {
    const token = room.sessionToken;
    const onSocket = this._onSocket(room);
    this._resetRoom(room);
    if (onSocket) {
      this._send({ type: 'leave', roomId: room.roomId }, { type: 'leave', room });
    } else if (token && !this._suspended) {
      this._disconnectHttp(token).catch(() => {});
    }
    if (!room.watched) room.clearView();
    this._notify(room);
    this._gc(room);
    this._maybeIdle();
  }

  /**
   * Whether the room's session lives on the open socket (joined, or its
   * join sent): a leave message or the close frame ends it.
   * @param {Room} room
   */
  _onSocket(room) {
    if (this._mode !== 'ws' || !this._wsOpen) return false;
    if (room.joined) return true;
    for (const p of this._pending.values()) if (p.type === 'join' && p.room === room) return true;
    return false;
  }

  /**
   * The session tokens that a close frame on the open socket would not end
   * (HTTP sessions, sessions of a lost socket): ended over HTTP instead.
   */
  _tokensOffSocket() {
    const tokens = [];
    for (const room of this._rooms.values()) {
      if (room.sessionToken && !this._onSocket(room)) tokens.push(room.sessionToken);
    }
    return tokens;
  }

  /** Forgets the room's session (not its view). @param {Room} room */
  _resetRoom(room) {
    room.joined = false;
    room.sessionToken = '';
    clearTimeout(room.retryTimer);
    room.retryTimer = null;
    clearTimeout(room.heartbeatTimer);
    room.heartbeatTimer = null;
    clearTimeout(room.gapTimer);
    room.gapTimer = null;
  }

  /** Drops a room nobody uses or listens to. @param {Room} room */
  _gc(room) {
    if (room.holders === 0 && room.watchers === 0 && room.listeners.size === 0 && !room.leaveTimer) {
      this._rooms.delete(room.roomId);
    }
  }

  /** @param {any} w */
  _unwatch(w) {
    if (--w.refs > 0) return;
    this._watchList = this._watchList.filter((x) => x !== w);
    const room = w.room;
    if (!room) return;
    room.watchers = Math.max(0, room.watchers - 1);
    if (room.watchers > 0) return;
    if (this._mode === 'ws' && this._wsOpen) this._send({ type: 'unwatch', roomId: room.roomId }, { type: 'unwatch', room });
    if (!room.held) {
      room.clearView();
      this._notify(room);
    }
    this._gc(room);
    this._maybeIdle();
  }

  /** @param {Room} room */
  _notify(room) {
    if (!room.publish()) return;
    const members = room.snapshot;
    for (const l of [...room.listeners]) {
      try {
        l(members);
      } catch (e) {
        this._error(e);
      }
    }
  }

  /** @param {unknown} e */
  _error(e) {
    if (this._onError) {
      try {
        this._onError(/** @type {any} */ (e));
      } catch {
        // an error handler's own error is not ours to report
      }
    }
  }

  _inUse() {
    for (const r of this._rooms.values()) if (r.inUse) return true;
    return this._watchList.length > 0 || this._users.size > 0 || this._counts.size > 0;
  }

  /** @param {string[]} ids users to watch on the socket (or poll) */
  _sendWatchUsers(ids) {
    if (this._suspended) return;
    if (this._mode === 'http') {
      if (this._status === 'http') this._httpPollSoon();
      return;
    }
    if (!this._wsOpen) return;
    // A message is at most 16 KiB: about 12 KB of ids per message.
    let batch = [];
    let size = 0;
    for (const u of ids) {
      const n = JSON.stringify(u).length + 1;
      if (batch.length && size + n > 12000) {
        this._send({ type: 'watchUsers', userIds: batch }, { type: 'watchUsers' });
        batch = [];
        size = 0;
      }
      batch.push(u);
      size += n;
    }
    if (batch.length) this._send({ type: 'watchUsers', userIds: batch }, { type: 'watchUsers' });
  }

  /**
   * Records users' states (a watchingUsers answer, a user frame, an HTTP
   * read) and tells the listeners if any changed.
   * @param {any[]} list
   */
  _setUsers(list) {
    let changed = false;
    for (const s of list) {
      if (!s || typeof s.userId !== 'string') continue;
      const e = this._users.get(s.userId);
      if (!e) continue;
      const next = { userId: s.userId, online: !!s.online, lastDisconnected: Number(s.lastDisconnected) || 0, rooms: Number(s.rooms) || 0 };
      if (!e.state || e.state.online !== next.online || e.state.rooms !== next.rooms || e.state.lastDisconnected !== next.lastDisconnected) {
        e.state = next;
        changed = true;
      }
    }
    if (changed) {
      for (const l of [...this._userListeners]) {
        try {
          l();
        } catch (err) {
          this._error(err);
        }
      }
    }
  }

  // -------------------------------------------------------- lifecycle

  // Attaches to the lifecycle and connects when the first room is used.
  _activate() {
    if (!this._active) {
      this._active = true;
      if (this._lifecycle) {
        this._unsubscribeLifecycle = this._lifecycle.subscribe((s) => this._onLifecycle(s));
        if (this._lifecycle.state && this._lifecycle.state() === 'background') this._onLifecycle('background');
      }
      const w = /** @type {any} */ (globalThis).window;
      if (w && typeof w.addEventListener === 'function') w.addEventListener('online', this._onOnline);
    }
    this._connect();
  }

  _deactivate() {
    if (!this._active) return;
    this._active = false;
    clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (this._unsubscribeLifecycle) this._unsubscribeLifecycle();
    this._unsubscribeLifecycle = null;
    const w = /** @type {any} */ (globalThis).window;
    if (w && typeof w.removeEventListener === 'function') w.removeEventListener('online', this._onOnline);
  }

  // Closes the socket when no room is in use any more (checked in the next
  // task: a leave followed by a join keeps the socket).
  _maybeIdle() {
    if (this._idleTimer) return;
    this._idleTimer = setTimeout(() => {
      this._idleTimer = null;
      this._idleNow();
    }, 0);
  }

  _idleNow() {
    if (this._inUse()) return;
    const anyTimer = [...this._rooms.values()].some((r) => r.leaveTimer);
    if (anyTimer) return;
    this._teardown('idle');
    this._suspended = false;
    this._deactivate();
    this._setStatus('idle');
  }

  /** @param {LifecycleState} state */
  _onLifecycle(state) {
    if (state === 'active') {
      clearTimeout(this._graceTimer);
      this._graceTimer = null;
      if (this._suspended) this._resume();
    } else if (state === 'background') {
      if (this._suspended || this._graceTimer) return;
      this._graceTimer = setTimeout(() => {
        this._graceTimer = null;
        this._suspend(false);
      }, this._opts.hiddenGrace);
    } else if (state === 'terminate') {
      clearTimeout(this._graceTimer);
      this._graceTimer = null;
      this._suspend(true);
    }
  }

  /**
   * Leaves every room (keeping what to rejoin): closes the socket with a
   * close frame (which ends its sessions at once) and, on pagehide, also
   * sends each session token to /v1/disconnect with sendBeacon, which the
   * browser delivers even as the page goes away.
   * @param {boolean} terminate
   */
  _suspend(terminate) {
    if (this._suspended) return;
    this._suspended = true;
    const all = [];
    for (const room of this._rooms.values()) if (room.sessionToken) all.push(room.sessionToken);
    const offSocket = this._tokensOffSocket();
    this._teardown(terminate ? 'pagehide' : 'hidden');
    for (const room of this._rooms.values()) this._resetRoom(room);
    if (terminate) {
      // The close frame may not leave a page that is going away: a beacon
      // does. Both end the same sessions; ending one twice is harmless.
      for (const t of all) this._beacon(t);
    } else {
      for (const t of offSocket) this._disconnectHttp(t).catch(() => {});
    }
    this._setStatus('suspended');
  }

  _resume() {
    this._suspended = false;
    if (!this._inUse()) {
      this._idleNow();
      return;
    }
    this._attempts = 0;
    this._connect();
  }

  /** @param {string} token */
  _beacon(token) {
    const url = `${this.url}/v1/disconnect`;
    let sent = false;
    if (this._sendBeacon) {
      try {
        sent = this._sendBeacon(url, token);
      } catch {
        sent = false;
      }
    }
    if (!sent) this._disconnectHttp(token).catch(() => {});
  }

  // The network is back: reconnect now rather than at the end of the backoff.
  _kick() {
    if (this._suspended || !this._inUse()) return;
    if (this._mode === 'ws' && !this._ws && this._reconnectTimer) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._attempts = 0;
      this._connect();
    }
  }

  /** @param {ConnectionStatus} s */
  _setStatus(s) {
    if (this._status === s) return;
    this._status = s;
    for (const l of [...this._statusListeners]) {
      try {
        l(s);
      } catch (e) {
        this._error(e);
      }
    }
  }

  // Stops the transport (socket, timers) without touching the rooms.
  /** @param {string} reason */
  _teardown(reason) {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._closeSocket(1000, reason);
    clearTimeout(this._pollTimer);
    this._pollTimer = null;
    clearTimeout(this._probeTimer);
    this._probeTimer = null;
    if (this._probe) {
      const p = this._probe;
      this._probe = null;
      p.onopen = p.onclose = p.onerror = p.onmessage = null;
      try {
        p.close(1000);
      } catch {
        // already closed
      }
    }
    for (const room of this._rooms.values()) {
      clearTimeout(room.heartbeatTimer);
      room.heartbeatTimer = null;
      clearTimeout(room.retryTimer);
      room.retryTimer = null;
    }
  }

  // ------------------------------------------------------- transport

  _connect() {
    if (this._suspended || !this._inUse()) return;
    if (this._mode === 'http') {
      this._startHttp();
      return;
    }
    if (this._ws || this._reconnectTimer) return;
    this._openSocket();
  }

  async _token() {
    if (!this._getToken) return null;
    const t = await this._getToken();
    if (t) this._tokenSubject = jwtSubject(t) ?? this._tokenSubject;
    return t || null;
  }

  async _wsURL() {
    const base = this.url.replace(/^http/i, 'ws');
    const token = await this._token();
    return `${base}/v1/ws${token ? `?access_token=${encodeURIComponent(token)}` : ''}`;
  }

  async _openSocket() {
    const gen = ++this._gen;
    this._setStatus(this._attempts > 0 || this._status === 'reconnecting' ? 'reconnecting' : 'connecting');
    this._ws = { pending: true, close() {} }; // placeholder while the token is fetched
    let url;
    try {
      url = await this._wsURL();
    } catch (e) {
      this._error(e);
      if (gen !== this._gen) return;
      this._ws = null;
      this._scheduleReconnect();
      return;
    }
    if (gen !== this._gen || this._suspended) return;
    let ws;
    try {
      ws = new this._WebSocket(url);
    } catch (e) {
      this._error(e);
      this._ws = null;
      this._wsFailures++;
      if (this._wsFailures >= this._opts.fallbackAfter) {
        this._mode = 'http';
        this._startHttp();
        return;
      }
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (gen !== this._gen) return;
      opened = true;
      this._onOpen();
    };
    ws.onmessage = (/** @type {any} */ ev) => {
      if (gen !== this._gen) return;
      this._onMessage(ev.data);
    };
    ws.onerror = () => {
      // onclose follows; nothing to do here.
    };
    ws.onclose = (/** @type {any} */ ev) => {
      if (gen !== this._gen) return;
      this._onSocketLost(opened, ev && ev.code);
    };
  }

  _onOpen() {
    this._wsOpen = true;
    this._wsFailures = 0;
    this._openedAt = Date.now();
    this._tokens = SEND_BURST;
    this._lastRefill = Date.now();
    this._setStatus('connected');
    this._restore();
    this._schedulePing();
  }

  // Joins every joined room again with the same sessionId (the server
  // resumes a session it still has, with no leave and no join) and watches
  // the watched rooms again.
  _restore() {
    for (const room of this._rooms.values()) {
      if (room.held && !room.leaveTimer) this._sendJoin(room);
    }
    for (const w of this._watchList) this._sendWatch(w);
    for (const c of this._counts.values()) this._sendWatchCount(c);
    // Watched users again: the answer brings their states afresh (what
    // changed while the socket was away).
    if (this._users.size) this._sendWatchUsers([...this._users.keys()]);
  }

  /**
   * @param {boolean} opened whether the socket had opened
   * @param {number} [code]
   */
  _onSocketLost(opened, code) {
    this._detachSocket();
    if (!opened) this._wsFailures++;
    else if (Date.now() - this._openedAt >= this._opts.stableAfter) this._attempts = 0;
    // The sessions live on until their deadline (no close frame was
    // sent): the rejoin resumes them; their tokens are kept to end them
    // over HTTP if they are left before that.
    for (const room of this._rooms.values()) {
      room.joined = false;
      clearTimeout(room.retryTimer);
      room.retryTimer = null;
    }
    if (this._suspended || !this._inUse()) return;
    if (this._wsFailures >= this._opts.fallbackAfter) {
      this._mode = 'http';
      this._startHttp();
      return;
    }
    void code; // every loss is worth a reconnect: a browser has no other node to try
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._reconnectTimer || this._suspended) return;
    const d = this._backoff(this._attempts++);
    this._setStatus('reconnecting');
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._mode === 'ws') this._connect();
    }, d);
  }

  /**
   * The delay before reconnect attempt n: backoffMin doubling up to
   * backoffMax, with jitter (a random point in its upper half).
   * @param {number} n
   */
  _backoff(n) {
    const d = Math.min(this._opts.backoffMax, this._opts.backoffMin * 2 ** Math.min(n, 30));
    return Math.round(d / 2 + this._random() * (d / 2));
  }

  _detachSocket() {
    const ws = this._ws;
    this._ws = null;
    this._wsOpen = false;
    this._gen++;
    clearTimeout(this._pingTimer);
    this._pingTimer = null;
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
    clearTimeout(this._sendTimer);
    this._sendTimer = null;
    this._outbox = [];
    this._pending.clear();
    if (ws && !ws.pending) ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    return ws;
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  _closeSocket(code, reason) {
    const ws = this._detachSocket();
    if (ws && !ws.pending) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  _schedulePing() {
    clearTimeout(this._pingTimer);
    this._pingTimer = setTimeout(() => {
      this._pingTimer = null;
      if (!this._wsOpen) return;
      this._send({ type: 'ping' }, { type: 'ping' });
      clearTimeout(this._pongTimer);
      this._pongTimer = setTimeout(() => {
        // No answer: the connection is dead (the peer is gone, or a laptop
        // woke up on another network). Reconnect.
        this._pongTimer = null;
        if (!this._wsOpen) return;
        const ws = this._ws;
        this._onSocketLost(true, 4000);
        try {
          ws && ws.close(4000, 'keepalive timeout');
        } catch {
          // already closed
        }
      }, this._opts.pongTimeout);
    }, this._opts.pingInterval);
  }

  /**
   * Sends a message now, or paced under the server's rate limit.
   * @param {Record<string, any>} msg
   * @param {{type: string, room?: Room, token?: string}} [pending]
   */
  _send(msg, pending) {
    if (!this._wsOpen) return;
    const id = ++this._nextId;
    if (pending) this._pending.set(id, pending);
    this._outbox.push(JSON.stringify({ ...msg, id }));
    this._flush();
  }

  _flush() {
    const now = Date.now();
    this._tokens = Math.min(SEND_BURST, this._tokens + (now - this._lastRefill) / SEND_PACE);
    this._lastRefill = now;
    while (this._outbox.length && this._tokens >= 1 && this._wsOpen) {
      this._tokens--;
      const frame = /** @type {string} */ (this._outbox.shift());
      try {
        this._ws.send(frame);
      } catch (e) {
        this._error(e);
      }
    }
    if (this._outbox.length && !this._sendTimer && this._wsOpen) {
      this._sendTimer = setTimeout(() => {
        this._sendTimer = null;
        this._flush();
      }, SEND_PACE);
    }
  }

  /** @param {Room} room */
  _sendJoin(room) {
    if (!room.held || this._suspended) return;
    if (this._mode === 'http') {
      if (this._status === 'http') this._httpHeartbeat(room, true);
      return;
    }
    if (!this._wsOpen) return;
    /** @type {Record<string, any>} */
    const msg = { type: 'join', roomId: room.roomId, sessionId: room.sessionId, interval: room.interval };
    if (room.data !== undefined) msg.data = room.data;
    if (room.userId !== undefined) msg.userId = room.userId;
    if (room.name) msg.name = room.name;
    if (room.image) msg.image = room.image;
    this._withPrivacy(msg);
    this._send(msg, { type: 'join', room });
  }

  /** @param {any} w */
  _sendWatch(w) {
    if (this._suspended) return;
    if (this._mode === 'http') {
      if (this._status === 'http') this._httpPollSoon();
      return;
    }
    if (this._wsOpen) this._send({ type: 'watch', roomToken: w.token }, { type: 'watch', token: w.token });
  }

  /** @param {unknown} data */
  _onMessage(data) {
    /** @type {any} */
    let m;
    try {
      m = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return;
    }
    if (!m || typeof m !== 'object') return;
    // Any message proves the connection alive.
    if (this._pongTimer) {
      clearTimeout(this._pongTimer);
      this._pongTimer = null;
      this._schedulePing();
    }
    const p = m.id !== undefined && m.id !== null ? this._pending.get(Number(m.id)) : undefined;
    if (p) this._pending.delete(Number(m.id));
    switch (m.type) {
      case 'presence':
      case 'batch': {
        const room = this._rooms.get(m.roomId);
        if (!room || !room.inUse) return;
        if (m.type === 'batch') room.batch(m);
        else room.event(m);
        this._watchGap(room);
        this._notify(room);
        return;
      }
      case 'count': {
        for (const c of this._counts.values()) if (c.roomId === m.roomId) this._setCount(c, m);
        return;
      }
      case 'sync': {
        const room = this._rooms.get(m.roomId);
        if (!room || !room.inUse) return;
        room.replace(Number(m.version), Array.isArray(m.members) ? m.members : []);
        this._watchGap(room);
        this._notify(room);
        return;
      }
      case 'joined': {
        const room = p && p.room ? p.room : this._rooms.get(m.roomId);
        if (!room) return;
        if (!room.held) return; // left meanwhile; the leave is on its way
        room.joined = true;
        room.retries = 0;
        room.roomToken = m.roomToken || room.roomToken;
        room.sessionToken = m.sessionToken || '';
        room.dataDirty = false;
        room.replace(Number(m.version), Array.isArray(m.members) ? m.members : []);
        this._watchGap(room);
        this._notify(room);
        return;
      }
      case 'watching': {
        if (p && p.type === 'watchCount') {
          const c = this._counts.get(p.token);
          if (!c) {
            if (!this._countWatched(m.roomId)) this._send({ type: 'unwatch', roomId: m.roomId }, { type: 'unwatch' });
            return;
          }
          c.roomId = m.roomId;
          for (const x of c.waiters) x.resolve(m.roomId);
          c.waiters = [];
          this._setCount(c, m, true);
          return;
        }
        const w = p && p.token !== undefined ? this._watchList.find((x) => x.token === p.token) : undefined;
        if (!w) {
          // Unwatched before the answer came.
          const r = this._rooms.get(m.roomId);
          if (!r || !r.watched) this._send({ type: 'unwatch', roomId: m.roomId }, { type: 'unwatch' });
          return;
        }
        const room = this._room(m.roomId);
        if (!w.room) {
          w.room = room;
          room.watchers++;
          room.watchToken = w.token;
          for (const x of w.waiters) x.resolve(room.roomId);
          w.waiters = [];
        }
        room.replace(Number(m.version), Array.isArray(m.members) ? m.members : []);
        this._watchGap(room);
        this._notify(room);
        return;
      }
      case 'watchingUsers':
        if (Array.isArray(m.users)) this._setUsers(m.users);
        return;
      case 'user':
        this._setUsers([m]);
        return;
      case 'left': {
        if (p) return; // the answer to our leave: already done
        // The server ended the session (sign-out, removal, expiry): it is
        // not rejoined, not even after a reconnect.
        const room = this._rooms.get(m.roomId);
        if (!room || room.holders === 0) return;
        room.ended = true;
        this._resetRoom(room);
        if (!room.watched) room.clearView();
        this._notify(room);
        this._error(new PresenceError('ended', `the session in room ${JSON.stringify(room.roomId)} was ended by the server${m.reason ? ` (${m.reason})` : ''}`));
        this._maybeIdle();
        return;
      }
      case 'error': {
        const err = new PresenceError(String(m.code || 'unknown'), String(m.message || ''));
        if (p && p.type === 'join' && p.room) this._joinRefused(p.room, err);
        else if (p && p.type === 'watch') this._watchRefused(p.token, err);
        else if (p && p.type === 'watchCount') this._countRefused(p.token, err);
        this._error(err);
        return;
      }
      default:
        return; // updated, unwatched, pong, and types of later versions
    }
  }

  /**
   * @param {Room} room
   * @param {PresenceError} err
   */
  _joinRefused(room, err) {
    if (!room.held) return;
    if (TRANSIENT_CODES.has(err.code)) {
      clearTimeout(room.retryTimer);
      room.retryTimer = setTimeout(() => {
        room.retryTimer = null;
        this._sendJoin(room);
      }, this._backoff(room.retries++));
      return;
    }
    room.ended = true;
    room.error = err;
    this._resetRoom(room);
    this._notify(room);
    this._maybeIdle();
  }

  /**
   * @param {string | undefined} token
   * @param {PresenceError} err
   */
  _watchRefused(token, err) {
    const w = this._watchList.find((x) => x.token === token);
    if (!w || TRANSIENT_CODES.has(err.code)) return;
    this._watchList = this._watchList.filter((x) => x !== w);
    for (const x of w.waiters) x.reject(err);
    w.waiters = [];
    if (w.room) {
      w.room.watchers = Math.max(0, w.room.watchers - 1);
      this._gc(w.room);
    }
    this._maybeIdle();
  }

  // Events ahead of the view for long (a gap the server did not repair
  // with a sync): ask for a fresh snapshot by joining (same session) or
  // watching again.
  /** @param {Room} room */
  _watchGap(room) {
    if (room.ahead.size === 0) {
      clearTimeout(room.gapTimer);
      room.gapTimer = null;
      return;
    }
    if (room.gapTimer) return;
    room.gapTimer = setTimeout(() => {
      room.gapTimer = null;
      if (room.ahead.size === 0) return;
      room.ahead.clear();
      if (room.held) this._sendJoin(room);
      else if (room.watchToken) this._send({ type: 'watch', roomToken: room.watchToken }, { type: 'watch', token: room.watchToken });
    }, this._opts.gapTimeout);
  }

  // ---------------------------------------------------- HTTP fallback

  _startHttp() {
    if (this._suspended) return;
    this._setStatus('http');
    for (const room of this._rooms.values()) {
      if (room.held && !room.heartbeatTimer && !room.hbInFlight) this._httpHeartbeat(room);
    }
    this._httpPollSoon();
    this._scheduleProbe();
  }

  /**
   * Sends a heartbeat for the room now and schedules the next one. With
   * force, a heartbeat asked for while one is in flight (new data, a new
   * name) follows it at once; without, it is not needed.
   * @param {Room} room
   * @param {boolean} [force]
   */
  async _httpHeartbeat(room, force = false) {
    if (room.hbInFlight) {
      if (force) room.hbAgain = true;
      return;
    }
    clearTimeout(room.heartbeatTimer);
    room.heartbeatTimer = null;
    if (!room.held || this._suspended || this._mode !== 'http') return;
    const first = !room.joined;
    /** @type {Record<string, any>} */
    const body = { roomId: room.roomId, sessionId: room.sessionId, interval: room.interval };
    const sentData = room.dataDirty && room.data !== undefined;
    if (sentData) body.data = room.data;
    if (room.userId !== undefined) body.userId = room.userId;
    if (room.name) body.name = room.name;
    if (room.image) body.image = room.image;
    // The privacy flags go with a room's first heartbeat, after a change
    // (setPrivacy), and with every keep-alive while one is on: a member
    // that Redis lost (a restart without its data) comes back with them,
    // never visible for a moment. The others' keep-alives carry none (the
    // node's fast decoder takes the usual fields only).
    const privacyGen = this._privacyGen;
    if (first || room.privacyGen !== privacyGen || this._privacy.invisible || this._privacy.hideLastSeen) {
      this._withPrivacy(body);
    }
    let next = room.interval;
    room.hbInFlight = true;
    try {
      const res = await this.api.heartbeat(body);
      if (!room.held || this._mode !== 'http' || this._suspended) {
        // Left (or suspended) while the heartbeat was on its way.
        if (res && res.sessionToken && res.sessionToken !== room.sessionToken) this._disconnectHttp(res.sessionToken).catch(() => {});
        return;
      }
      room.joined = true;
      room.retries = 0;
      room.roomToken = res.roomToken || '';
      room.sessionToken = res.sessionToken || '';
      room.privacyGen = privacyGen;
      if (sentData && sameJSON(body.data, room.data)) room.dataDirty = false;
      if (first || sentData) this._httpPollSoon();
    } catch (e) {
      const err = /** @type {PresenceError} */ (e);
      this._error(err);
      if (err.status >= 400 && err.status < 500 && ![401, 408, 429].includes(err.status)) {
        room.ended = true;
        room.error = err;
        this._resetRoom(room);
        this._notify(room);
        return;
      }
      next = Math.min(room.interval, this._backoff(room.retries++));
    } finally {
      room.hbInFlight = false;
    }
    if (!room.held || this._suspended || this._mode !== 'http') return;
    if (room.hbAgain) {
      room.hbAgain = false;
      this._httpHeartbeat(room);
      return;
    }
    room.heartbeatTimer = setTimeout(() => this._httpHeartbeat(room), next);
  }

  _httpPollSoon() {
    clearTimeout(this._pollTimer);
    this._pollTimer = setTimeout(() => this._httpPoll(), 0);
  }

  // Lists every joined or watched room (If-None-Match: an unchanged room
  // costs a 304), then schedules the next poll.
  async _httpPoll() {
    this._pollTimer = null;
    if (this._suspended || this._mode !== 'http') return;
    /** @type {Array<Promise<void>>} */
    const polls = [];
    for (const room of this._rooms.values()) {
      if (room.held && room.joined && room.roomToken) polls.push(this._httpList(room, room.roomToken));
    }
    for (const w of this._watchList) polls.push(this._httpList(w.room, w.token, w));
    for (const u of this._users.keys()) {
      polls.push(
        this.api.userPresence(u).then(
          (s) => {
            if (this._mode === 'http') this._setUsers([s]);
          },
          (e) => this._error(e),
        ),
      );
    }
    await Promise.all(polls);
    if (this._suspended || this._mode !== 'http' || this._pollTimer) return;
    this._pollTimer = setTimeout(() => this._httpPoll(), this._opts.pollInterval);
  }

  /**
   * @param {Room | null} room
   * @param {string} token
   * @param {any} [w]
   */
  async _httpList(room, token, w) {
    try {
      /** @type {Record<string, string>} */
      const headers = {};
      if (room && room.etag) headers['If-None-Match'] = room.etag;
      const res = await this._fetch(`${this.url}/v1/list?roomToken=${encodeURIComponent(token)}`, { method: 'GET', headers });
      if (res.status === 304) return;
      if (!res.ok) throw await errorOf(res);
      const body = await res.json();
      if (this._mode !== 'http') return;
      if (w) {
        if (!this._watchList.includes(w)) return;
        if (!w.room) {
          w.room = this._room(body.roomId);
          w.room.watchers++;
          w.room.watchToken = token;
          for (const x of w.waiters) x.resolve(body.roomId);
          w.waiters = [];
        }
        room = w.room;
      }
      if (!room || !room.inUse) return;
      room.etag = (res.headers && res.headers.get && res.headers.get('ETag')) || '';
      room.replace(Number(body.version), Array.isArray(body.members) ? body.members : []);
      this._notify(room);
    } catch (e) {
      this._error(e);
      if (w && /** @type {any} */ (e).status === 400) this._watchRefused(token, /** @type {any} */ (e));
    }
  }

  // In the HTTP fallback, tries a WebSocket now and then; when one opens
  // the client moves back to it (the rooms are joined with the same
  // sessionIds: the sessions continue).
  _scheduleProbe() {
    if (!this._WebSocket || this._probeTimer || this._probe) return;
    this._probeTimer = setTimeout(async () => {
      this._probeTimer = null;
      if (this._mode !== 'http' || this._suspended || !this._inUse()) return;
      let ws;
      try {
        ws = new this._WebSocket(await this._wsURL());
      } catch {
        this._scheduleProbe();
        return;
      }
      if (this._mode !== 'http' || this._suspended) {
        try {
          ws.close(1000);
        } catch {
          // not open yet
        }
        return;
      }
      this._probe = ws;
      ws.onopen = () => {
        if (this._probe !== ws) return;
        this._probe = null;
        this._switchToWs(ws);
      };
      ws.onclose = () => {
        if (this._probe !== ws) return;
        this._probe = null;
        this._scheduleProbe();
      };
      ws.onerror = () => {};
    }, this._opts.wsRetryInterval);
  }

  /** @param {any} ws */
  _switchToWs(ws) {
    this._mode = 'ws';
    clearTimeout(this._pollTimer);
    this._pollTimer = null;
    for (const room of this._rooms.values()) {
      clearTimeout(room.heartbeatTimer);
      room.heartbeatTimer = null;
    }
    this._attempts = 0;
    this._wsFailures = 0;
    const gen = ++this._gen;
    this._ws = ws;
    let opened = true;
    ws.onmessage = (/** @type {any} */ ev) => {
      if (gen === this._gen) this._onMessage(ev.data);
    };
    ws.onclose = (/** @type {any} */ ev) => {
      if (gen === this._gen) this._onSocketLost(opened, ev && ev.code);
    };
    ws.onerror = () => {};
    this._onOpen();
  }

  // --------------------------------------------------------- HTTP calls

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {{auth?: boolean}} [o]
   */
  async _request(method, path, body, o = {}) {
    /** @type {Record<string, string>} */
    const headers = {};
    if (o.auth !== false) {
      const t = await this._token();
      if (t) headers.Authorization = `Bearer ${t}`;
    }
    /** @type {RequestInit} */
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await this._fetch(this.url + path, init);
    if (!res.ok) throw await errorOf(res);
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  /** @param {string} token */
  async _disconnectHttp(token) {
    const res = await this._fetch(`${this.url}/v1/disconnect`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: token,
      keepalive: true,
    });
    if (!res.ok) throw await errorOf(res);
  }
}

/** @param {Response} res */
async function errorOf(res) {
  let code = 'unknown';
  let message = `HTTP ${res.status}`;
  try {
    const b = await res.json();
    if (b && b.error) {
      code = b.error.code || code;
      message = b.error.message || message;
    }
  } catch {
    // not JSON
  }
  return new PresenceError(code, message, res.status);
}
