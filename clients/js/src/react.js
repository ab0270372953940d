// @ts-check
/**
 * React and React Native bindings of the presence client: a provider, the
 * hooks the apps we replace call (useGlobalPresence, useRoomPresence,
 * useSignOutWithPresence), usePresence, and a FacePile component.
 *
 * No JSX (React.createElement), so the package needs no build step.
 */
import * as React from 'react';
import { GLOBAL_ROOM, PresenceClient, lastSeen, newSessionId, ownFirst } from './client.js';

/** @typedef {import("./index").Member} Member */

const h = React.createElement;

/**
 * @typedef {{ client: PresenceClient, globalRoom: string, onSignOut: (...args: any[]) => any }} PresenceContextValue
 */

/** @type {React.Context<PresenceContextValue | null>} */
export const PresenceContext = React.createContext(/** @type {PresenceContextValue | null} */ (null));

/**
 * Provides a PresenceClient to the hooks below it: the `client` given, or
 * one it creates from the other props (the PresenceClient options) and
 * closes when it unmounts.
 * @param {any} props
 */
export function PresenceProvider(props) {
  const { client, children, globalRoom = GLOBAL_ROOM, onSignOut, ...options } = props;
  const getTokenRef = React.useRef(options.getToken);
  getTokenRef.current = options.getToken;
  const onSignOutRef = React.useRef(onSignOut);
  onSignOutRef.current = onSignOut;
  // Created once (Strict Mode may call this twice: creating a client opens
  // nothing, so the spare one costs nothing).
  const [own] = React.useState(() =>
    client
      ? null
      : new PresenceClient({
          ...options,
          getToken: options.getToken ? () => getTokenRef.current() : undefined,
        }),
  );
  const c = client ?? own;
  React.useEffect(() => {
    if (!own) return undefined;
    const o = /** @type {any} */ (own);
    clearTimeout(o.__closeTimer);
    // Deferred: Strict Mode unmounts and mounts again at once.
    return () => {
      o.__closeTimer = setTimeout(() => own.close(), 0);
    };
  }, [own]);
  // invisible / hideLastSeen: the client's privacy in all its rooms; a
  // change of the prop is sent at once (setPrivacy). A client the provider
  // created got them with its options.
  const { invisible, hideLastSeen } = options;
  const privacyApplied = React.useRef(own ? { invisible, hideLastSeen } : {});
  React.useEffect(() => {
    const p = privacyApplied.current;
    if (p.invisible === invisible && p.hideLastSeen === hideLastSeen) return;
    privacyApplied.current = { invisible, hideLastSeen };
    c.setPrivacy({ invisible, hideLastSeen });
  }, [c, invisible, hideLastSeen]);
  const value = React.useMemo(
    () => ({ client: c, globalRoom, onSignOut: (/** @type {any[]} */ ...a) => onSignOutRef.current?.(...a) }),
    [c, globalRoom],
  );
  return h(PresenceContext.Provider, { value }, children);
}

/**
 * The client of the nearest PresenceProvider (or `client`).
 * @param {PresenceClient} [client]
 * @returns {PresenceClient}
 */
export function usePresenceClient(client) {
  const ctx = React.useContext(PresenceContext);
  const c = client ?? ctx?.client;
  if (!c) throw new Error('presence: wrap the app in <PresenceProvider> (or pass options.client)');
  return c;
}

const noop = () => {};

/**
 * Joins a room for as long as the component is mounted and returns its
 * members, the own user first, then in the server's order (online members
 * in the order they came online, then offline ones, most recent first);
 * undefined until the first snapshot. It re-renders only when the list
 * changes. Each hook instance has its own stable sessionId; a change of
 * room ends the old session; Strict Mode's double mount keeps one session.
 * With `enabled: false` (or no roomId) it joins nothing and shows what the
 * client knows of the room.
 * @param {string | null | undefined} roomId
 * @param {import('./react').UsePresenceOptions} [options]
 * @returns {readonly Member[] | undefined}
 */
export function usePresence(roomId, options = {}) {
  const client = usePresenceClient(options.client);
  const { userId, name, image, interval, data } = options;
  const enabled = options.enabled ?? true;
  const active = enabled && !!roomId;

  // One sessionId per hook instance (and user: a sessionId belongs to one user).
  const session = React.useRef(/** @type {{ id: string, user: string | undefined } | null} */ (null));
  if (session.current === null || session.current.user !== userId) {
    session.current = { id: options.sessionId ?? newSessionId(), user: userId };
  }
  const sessionId = session.current.id;

  const dataRef = React.useRef(data);
  dataRef.current = data;
  const handle = React.useRef(/** @type {import('./index').JoinHandle | null} */ (null));

  React.useEffect(() => {
    if (!active || !roomId) return undefined;
    const j = client.join(roomId, { sessionId, userId, name, image, interval, data: dataRef.current });
    handle.current = j;
    return () => {
      handle.current = null;
      j.leave();
    };
  }, [client, roomId, active, sessionId, userId, name, image, interval]);

  const dataKey = data === undefined ? undefined : JSON.stringify(data);
  React.useEffect(() => {
    if (dataKey !== undefined && handle.current) handle.current.update(dataRef.current);
  }, [dataKey]);

  const subscribe = React.useCallback(
    (/** @type {() => void} */ onChange) => (roomId ? client.subscribe(roomId, onChange) : noop),
    [client, roomId],
  );
  const getSnapshot = React.useCallback(() => (roomId ? client.getMembers(roomId) : undefined), [client, roomId]);
  const members = React.useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
  const self = userId ?? (roomId ? client.selfId(roomId) : client.selfId());
  return React.useMemo(() => ownFirst(members, self), [members, self]);
}

/**
 * Follows these users across all rooms of the org for as long as the
 * component is mounted ("friends online") and returns their states, in the
 * order given (an entry is undefined until known). It re-renders only when
 * one of them changes.
 * @param {readonly string[] | null | undefined} userIds
 * @param {{ client?: PresenceClient }} [options]
 * @returns {Array<import('./index').UserPresence | undefined>}
 */
export function useUsersPresence(userIds, options = {}) {
  const client = usePresenceClient(options.client);
  const key = userIds && userIds.length ? JSON.stringify(userIds) : '';
  React.useEffect(() => {
    if (!key) return undefined;
    const h = client.watchUsers(JSON.parse(key));
    return () => h.unwatch();
  }, [client, key]);
  const last = React.useRef(/** @type {{ json: string, value: Array<import('./index').UserPresence | undefined> }} */ ({ json: '', value: [] }));
  const getSnapshot = React.useCallback(() => {
    const value = key ? client.getUsers(JSON.parse(key)) : [];
    const json = JSON.stringify(value);
    if (json !== last.current.json) last.current = { json, value };
    return last.current.value;
  }, [client, key]);
  const subscribe = React.useCallback((/** @type {() => void} */ onChange) => client.subscribeUsers(onChange), [client]);
  return React.useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/**
 * Follows a room in count mode for as long as the component is mounted and
 * returns its counts ({ roomId, version, online, sessions }; undefined
 * until known): "12,345 here" for a room of any size, at most one update a
 * second while it changes.
 * @param {string | null | undefined} roomToken
 * @param {{ client?: PresenceClient }} [options]
 * @returns {import('./index').RoomCount | undefined}
 */
export function useRoomCount(roomToken, options = {}) {
  const client = usePresenceClient(options.client);
  const [count, setCount] = React.useState(/** @type {import('./index').RoomCount | undefined} */ (undefined));
  React.useEffect(() => {
    setCount(undefined);
    if (!roomToken) return undefined;
    const h = client.watchCount(roomToken, setCount);
    h.roomId.then((id) => setCount((prev) => prev ?? client.getCount(id))).catch(noop);
    return () => h.unwatch();
  }, [client, roomToken]);
  return count;
}

/**
 * The user id a hook joins as: the option, the client's, or, with auth off
 * and no user configured, the user name (as the Convex hooks did).
 * @param {PresenceClient} client
 * @param {string | undefined} userName
 * @param {string | undefined} userId
 */
function joinAs(client, userName, userId) {
  if (userId !== undefined) return userId;
  if (client.userId !== undefined) return client.userId;
  return client.hasAuth || !userName ? undefined : userName;
}

/**
 * Presence in the app-global room (the provider's `globalRoom`, default
 * "app-global-room"), as `useGlobalPresence(userName)` in the apps we
 * replace: an empty userName (not signed in) joins nothing.
 * @param {string | null | undefined} userName
 * @param {import('./react').UsePresenceOptions & { roomId?: string }} [options]
 */
export function useGlobalPresence(userName, options = {}) {
  const ctx = React.useContext(PresenceContext);
  const client = usePresenceClient(options.client);
  const roomId = options.roomId ?? ctx?.globalRoom ?? GLOBAL_ROOM;
  return useRoomPresence(roomId, userName, { ...options, client });
}

/**
 * Presence in one room (a chat, a document), as `useRoomPresence(roomId,
 * userName)` in the apps we replace: the name is the member's `name`.
 * @param {string | null | undefined} roomId
 * @param {string | null | undefined} userName
 * @param {import('./react').UsePresenceOptions} [options]
 */
export function useRoomPresence(roomId, userName, options = {}) {
  const client = usePresenceClient(options.client);
  const name = userName || undefined;
  return usePresence(roomId, {
    ...options,
    client,
    name: options.name ?? name,
    userId: joinAs(client, name, options.userId),
    enabled: !!name && (options.enabled ?? true),
  });
}

/**
 * `{ signOut }`: ends the user's presence everywhere at once (POST
 * /v1/signout: every session in every room, other tabs and devices too),
 * closes the client, then calls the app's own sign-out (`appSignOut`, else
 * the provider's `onSignOut`) with signOut's arguments. A presence failure
 * is logged and does not stop the sign-out.
 * @param {(...args: any[]) => any} [appSignOut]
 * @param {{ client?: PresenceClient, forget?: boolean }} [options]
 */
export function useSignOutWithPresence(appSignOut, options = {}) {
  const ctx = React.useContext(PresenceContext);
  const client = usePresenceClient(options.client);
  const ref = React.useRef(appSignOut);
  ref.current = appSignOut;
  const forget = !!options.forget;
  const signOut = React.useCallback(
    async (/** @type {any[]} */ ...args) => {
      try {
        await client.signOut({ forget });
      } catch (e) {
        console.error('presence: sign-out could not clear presence:', e);
      }
      const cb = ref.current ?? ctx?.onSignOut;
      return cb ? await cb(...args) : undefined;
    },
    [client, ctx, forget],
  );
  return { signOut };
}

const palette = ['#e57373', '#f06292', '#ba68c8', '#7986cb', '#4fc3f7', '#4db6ac', '#81c784', '#ffb74d', '#a1887f', '#90a4ae'];

/** @param {string} s */
function colorOf(s) {
  let x = 0;
  for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) >>> 0;
  return palette[x % palette.length];
}

/** @param {Member} m */
function initials(m) {
  const n = (m.name || m.userId || '?').trim();
  const parts = n.split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : n.slice(0, 2);
  return s.toUpperCase();
}

/**
 * A face pile: the first `max` members as avatars (picture, or initials on
 * a color of the user), a "+N" for the others, online ones in color with a
 * green dot, offline ones faded with "last seen …" in their tooltip.
 * @param {import('./react').FacePileProps} props
 */
export function FacePile(props) {
  const { members, max = 5, size = 32, showOffline = true, now, className, style } = props;
  const list = (members ?? []).filter((m) => showOffline || m.online);
  const shown = list.slice(0, max);
  const rest = list.slice(max);
  const t = now ?? Date.now();
  const online = list.filter((m) => m.online).length;
  const avatar = (/** @type {Member} */ m, /** @type {number} */ i) => {
    const label = `${m.name || m.userId} — ${lastSeen(m, t)}`;
    const inner = m.image
      ? h('img', { src: m.image, alt: '', width: size, height: size, style: { width: size, height: size, borderRadius: '50%', objectFit: 'cover' } })
      : h('span', { 'aria-hidden': true }, initials(m));
    return h(
      'span',
      {
        key: m.userId,
        role: 'listitem',
        title: label,
        'aria-label': label,
        className: `presence-avatar ${m.online ? 'presence-online' : 'presence-offline'}`,
        'data-user-id': m.userId,
        'data-online': m.online ? 'true' : 'false',
        style: {
          position: 'relative',
          display: 'inline-flex',
          alignItems: 'center',
          justifyContent: 'center',
          width: size,
          height: size,
          marginLeft: i === 0 ? 0 : -size / 4,
          borderRadius: '50%',
          border: '2px solid #fff',
          background: m.image ? '#ddd' : colorOf(m.userId),
          color: '#fff',
          fontSize: size * 0.4,
          fontFamily: 'system-ui, sans-serif',
          fontWeight: 600,
          opacity: m.online ? 1 : 0.45,
          filter: m.online ? undefined : 'grayscale(1)',
          zIndex: shown.length - i,
        },
      },
      inner,
      h('span', {
        'aria-hidden': true,
        style: {
          position: 'absolute',
          right: -1,
          bottom: -1,
          width: size / 4,
          height: size / 4,
          borderRadius: '50%',
          border: '2px solid #fff',
          background: m.online ? '#2e7d32' : '#9e9e9e',
        },
      }),
    );
  };
  return h(
    'div',
    {
      role: 'list',
      'aria-label': `${online} online`,
      className: ['presence-facepile', className].filter(Boolean).join(' '),
      style: { display: 'inline-flex', alignItems: 'center', ...style },
    },
    shown.map(avatar),
    rest.length > 0 &&
      h(
        'span',
        {
          key: '+',
          className: 'presence-more',
          title: rest.map((m) => `${m.name || m.userId} — ${lastSeen(m, t)}`).join('\n'),
          style: {
            display: 'inline-flex',
            alignItems: 'center',
            justifyContent: 'center',
            minWidth: size,
            height: size,
            marginLeft: -size / 4,
            padding: '0 4px',
            boxSizing: 'border-box',
            borderRadius: size / 2,
            border: '2px solid #fff',
            background: '#eceff1',
            color: '#37474f',
            fontSize: size * 0.38,
            fontFamily: 'system-ui, sans-serif',
          },
        },
        `+${rest.length}`,
      ),
  );
}

export { GLOBAL_ROOM, PresenceClient, lastSeen, ownFirst };
