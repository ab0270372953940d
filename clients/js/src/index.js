// @ts-check
// The package's main entry: the client and its helpers (no React).
export {
  PresenceClient,
  PresenceError,
  GLOBAL_ROOM,
  newSessionId,
  ownFirst,
  lastSeen,
  browserLifecycle,
  appStateLifecycle,
} from './client.js';
