import type * as React from 'react';
import type { Member, PresenceClient, PresenceClientOptions, UserPresence } from './index';

export { GLOBAL_ROOM, PresenceClient, lastSeen, ownFirst } from './index';

export interface PresenceContextValue {
  client: PresenceClient;
  globalRoom: string;
  onSignOut: (...args: any[]) => any;
}
export const PresenceContext: React.Context<PresenceContextValue | null>;

/** `invisible` and `hideLastSeen` (PresenceClientOptions) apply to every room of the client; changing the prop sends the change at once */
export interface PresenceProviderProps extends PresenceClientOptions {
  /** a client of your own; without one the provider creates one from the options and closes it on unmount */
  client?: PresenceClient;
  /** the room of useGlobalPresence; default "app-global-room" */
  globalRoom?: string;
  /** the app's own sign-out, called by useSignOutWithPresence() when it is given none */
  onSignOut?: (...args: any[]) => any;
  children?: React.ReactNode;
}
export function PresenceProvider(props: PresenceProviderProps): React.ReactElement;

export function usePresenceClient(client?: PresenceClient): PresenceClient;

export interface UsePresenceOptions {
  client?: PresenceClient;
  /** false: join nothing (default true) */
  enabled?: boolean;
  /** default: a new random id per hook instance */
  sessionId?: string;
  /** auth off: the user (with a JWT the server uses `sub`) */
  userId?: string;
  /** auth off: the profile (with a JWT: the name/picture claims) */
  name?: string;
  image?: string;
  /** the member's data; a change is sent as an update */
  data?: unknown;
  /** ms; default the client's (10000) */
  interval?: number;
}

/** The room's members, own user first; undefined until the first snapshot. */
export function usePresence(roomId: string | null | undefined, options?: UsePresenceOptions): readonly Member[] | undefined;
export function useGlobalPresence(
  userName: string | null | undefined,
  options?: UsePresenceOptions & { roomId?: string },
): readonly Member[] | undefined;
export function useRoomPresence(
  roomId: string | null | undefined,
  userName: string | null | undefined,
  options?: UsePresenceOptions,
): readonly Member[] | undefined;
export function useSignOutWithPresence<A extends any[] = any[], R = unknown>(
  appSignOut?: (...args: A) => R | Promise<R>,
  options?: { client?: PresenceClient; forget?: boolean },
): { signOut: (...args: A) => Promise<R | undefined> };

/**
 * The org-wide state of these users ("friends online"), in the order
 * given; an entry is undefined until its state is known.
 */
/** Follows a room's counts only (count mode) while mounted; undefined until known. */
export function useRoomCount(
  roomToken: string | null | undefined,
  options?: { client?: PresenceClient },
): import('./index').RoomCount | undefined;
export function useUsersPresence(
  userIds: readonly string[] | null | undefined,
  options?: { client?: PresenceClient },
): Array<UserPresence | undefined>;

export interface FacePileProps {
  members: readonly Member[] | undefined;
  /** avatars shown before "+N"; default 5 */
  max?: number;
  /** px; default 32 */
  size?: number;
  /** show offline members (faded, "last seen …"); default true */
  showOffline?: boolean;
  /** the time "last seen" counts from (ms); default Date.now() */
  now?: number;
  className?: string;
  style?: React.CSSProperties;
}
export function FacePile(props: FacePileProps): React.ReactElement;
