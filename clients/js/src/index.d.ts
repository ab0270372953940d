/** A member of a room, as the server lists it (README: Presence rules, member JSON). */
export interface Member {
  userId: string;
  online: boolean;
  /** unix ms of the last disconnect; 0 while online or if never offline */
  lastDisconnected: number;
  /** live sessions (tabs, devices) of the user in the room */
  sessions: number;
  /** the member's app data (any JSON); absent when unset */
  data?: unknown;
  name?: string;
  image?: string;
  /** set only in an admin's list with includeInvisible: the member is invisible (shown as it is) */
  invisible?: boolean;
}

/** A user's org-wide state (README: GET /v1/users/{userId}/presence). */
export interface UserPresence {
  userId: string;
  /** online while the user has a live session in any room of the org */
  online: boolean;
  /** unix ms when it went offline everywhere; 0 while online or if never seen */
  lastDisconnected: number;
  /** the rooms where it is online */
  rooms: number;
}

export interface WatchUsersHandle {
  unwatch(): void;
}

/** A room's counts (count mode: watchCount). */
export interface RoomCount {
  roomId: string;
  version: number;
  /** online members */
  online: number;
  /** live sessions */
  sessions: number;
}

export interface WatchCountHandle {
  roomId: Promise<string>;
  unwatch(): void;
}

export type ConnectionStatus = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'http' | 'suspended';

/** "terminate" is pagehide: the page is going away (or into the back/forward cache). */
export type LifecycleState = 'active' | 'background' | 'terminate';

/** Where the client learns that the page or app is hidden, visible or going away. */
export interface LifecycleAdapter {
  subscribe(onChange: (state: LifecycleState) => void): () => void;
  /** the state now; "background" at start begins the grace period */
  state?(): LifecycleState;
}

/** The WebSocket constructor the client uses (the browser's, `ws`, React Native's). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code?: number }) => void) | null;
  onerror: ((ev: any) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface PresenceClientOptions {
  /** base URL of a node ("https://presence.example.com"); default: the page's origin */
  url?: string;
  /** returns the user's JWT (or null before sign-in); called for every socket and request */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** auth off only: the user (with a JWT the server takes it from `sub`) */
  userId?: string;
  /** auth off only: profile shown in lists (with a JWT: the name/picture claims) */
  name?: string;
  image?: string;
  /** appear offline in every room of this client: offline to everyone else (lists, counts, events, watchUsers, webhooks); default: keep the member's setting (false for a new member) */
  invisible?: boolean;
  /** others see lastDisconnected 0 for this client's user in every room; default: keep the member's setting */
  hideLastSeen?: boolean;
  /** heartbeat interval in ms (1000–600000, default 10000): over WebSocket only how long a session outlives a lost socket (× 2.5) */
  interval?: number;
  /** ms a page stays hidden (an app in the background) before its sessions end; default 10000 */
  hiddenGrace?: number;
  /** reconnect delay: backoffMin doubling up to backoffMax, jittered (defaults 250 and 10000 ms) */
  backoffMin?: number;
  backoffMax?: number;
  /** sockets in a row that never open before the client falls back to HTTP heartbeats; default 3 */
  fallbackAfter?: number;
  /** in the HTTP fallback, how often a WebSocket is tried again; default 60000 */
  wsRetryInterval?: number;
  /** in the HTTP fallback, how often lists are polled (with If-None-Match); default 5000 */
  pollInterval?: number;
  /** app-level ping on an idle socket and how long its answer may take; defaults 20000 and 10000 */
  pingInterval?: number;
  pongTimeout?: number;
  /** ms between the release of a room's last handle and the leave; default 0 (the next task) */
  leaveDelay?: number;
  /** a socket open this long resets the backoff; default 5000 */
  stableAfter?: number;
  /** events ahead of the view this long (no sync came) make the client ask for a snapshot; default 5000 */
  gapTimeout?: number;
  /** lifecycle: default the browser's (visibilitychange, pagehide) when there is a document; false: none */
  lifecycle?: LifecycleAdapter | false | null;
  /** WebSocket constructor; default globalThis.WebSocket; null forces the HTTP fallback */
  WebSocket?: WebSocketConstructor | null;
  fetch?: typeof fetch;
  sendBeacon?: (url: string, body: string) => boolean;
  /** a number in [0, 1): the backoff jitter (tests) */
  random?: () => number;
  /** errors that have no caller to throw to: refused joins, failed heartbeats, ended sessions */
  onError?: (error: Error) => void;
}

export interface JoinOptions {
  /** default: a new random id (the first join of a room decides) */
  sessionId?: string;
  userId?: string;
  name?: string;
  image?: string;
  data?: unknown;
  interval?: number;
}

export interface JoinHandle {
  readonly roomId: string;
  readonly sessionId: string;
  /** releases this handle; the session ends when no handle holds it */
  leave(): void;
  update(data: unknown): void;
}

export interface WatchHandle {
  roomId: Promise<string>;
  unwatch(): void;
}

export interface RoomInfo {
  roomId: string;
  version: number | null;
  members: readonly Member[] | undefined;
  joined: boolean;
  ended: boolean;
  error: PresenceError | null;
  sessionId: string | null;
  roomToken: string;
  sessionToken: string;
}

export interface RoomList {
  roomId: string;
  version: number;
  members: Member[];
  /** the cursor of the next page, while more members follow */
  next?: string;
}

export interface PresenceApi {
  heartbeat(body: {
    roomId: string;
    sessionId: string;
    interval?: number;
    data?: unknown;
    userId?: string;
    name?: string;
    image?: string;
  }): Promise<{ roomToken: string; sessionToken: string; interval: number }>;
  list(roomToken: string, opts?: { limit?: number; cursor?: string }): Promise<RoomList>;
  /** the pages of a list, first to last; a page's version differs from the first's if the room changed */
  pages(roomToken: string, opts?: { limit?: number }): AsyncGenerator<RoomList, void, undefined>;
  /** the whole list at one version, read page by page (limit default 1000); started again when the room changed */
  listAll(roomToken: string, opts?: { limit?: number }): Promise<RoomList>;
  disconnect(sessionToken: string): Promise<void>;
  signOut(opts?: { forget?: boolean; userId?: string }): Promise<{ rooms: number }>;
  listUser(
    userId: string,
    opts?: { onlineOnly?: boolean; limit?: number },
  ): Promise<{ userId: string; rooms: Array<{ roomId: string; online: boolean; lastDisconnected: number }> }>;
  userPresence(userId: string): Promise<UserPresence>;
  listRoom(roomId: string, opts?: { onlineOnly?: boolean; limit?: number; cursor?: string }): Promise<RoomList>;
  roomPages(roomId: string, opts?: { onlineOnly?: boolean; limit?: number }): AsyncGenerator<RoomList, void, undefined>;
  listRoomAll(roomId: string, opts?: { onlineOnly?: boolean; limit?: number }): Promise<RoomList>;
  count(roomId: string): Promise<{ roomId: string; version: number; online: number; sessions: number }>;
  updateRoomUser(roomId: string, userId: string, data: unknown): Promise<null>;
  removeRoomUser(roomId: string, userId: string): Promise<null>;
  removeRoom(roomId: string): Promise<null>;
}

export class PresenceError extends Error {
  constructor(code: string, message: string, status?: number);
  /** the error code (README: Errors; "conflict", "unavailable", ...), "ended" for a session ended by the server */
  code: string;
  /** the HTTP status (0 for WebSocket errors) */
  status: number;
}

export class PresenceClient {
  constructor(options?: PresenceClientOptions);
  readonly url: string;
  userId?: string;
  name?: string;
  image?: string;
  readonly status: ConnectionStatus;
  readonly transport: 'ws' | 'http';
  readonly hasAuth: boolean;
  readonly api: PresenceApi;
  onStatus(listener: (status: ConnectionStatus) => void): () => void;
  join(roomId: string, opts?: JoinOptions): JoinHandle;
  leave(roomId: string): void;
  update(roomId: string, data: unknown): void;
  /** sets this client's privacy in every room it is in and joins later (undefined fields keep their setting); invisible: a leave to the others, visible again a join */
  setPrivacy(privacy: { invisible?: boolean; hideLastSeen?: boolean }): void;
  /** the privacy flags this client sends */
  readonly privacy: { invisible?: boolean; hideLastSeen?: boolean };
  watch(roomToken: string): WatchHandle;
  subscribe(roomId: string, listener: (members: readonly Member[] | undefined) => void): () => void;
  getMembers(roomId: string): readonly Member[] | undefined;
  /** follows users across all rooms of the org (at most 1000 per client) */
  watchUsers(userIds: string[], onChange?: (users: Array<UserPresence | undefined>) => void): WatchUsersHandle;
  getUsers(userIds: string[]): Array<UserPresence | undefined>;
  /** follows a room's counts only: at most one update per second while it changes (WebSocket only) */
  watchCount(roomToken: string, onChange?: (count: RoomCount) => void): WatchCountHandle;
  getCount(roomId: string): RoomCount | undefined;
  subscribeUsers(listener: () => void): () => void;
  getRoom(roomId: string): RoomInfo | undefined;
  selfId(roomId?: string): string | undefined;
  close(): Promise<void>;
  signOut(opts?: { forget?: boolean }): Promise<{ rooms: number }>;
}

export const GLOBAL_ROOM: 'app-global-room';
export function newSessionId(): string;
export function ownFirst<T extends readonly Member[] | undefined>(members: T, selfId: string | null | undefined): T;
export function lastSeen(member: Member, now?: number): string;
export function browserLifecycle(win?: any, doc?: any): LifecycleAdapter;
export function appStateLifecycle(AppState: {
  currentState?: string | null;
  addEventListener(type: 'change', listener: (state: string) => void): { remove(): void } | any;
}): LifecycleAdapter;
