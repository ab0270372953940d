// Package presence is the domain core of the presence cluster: the vocabulary
// (Member, Event, Identity), the coded Error type, the validation rules for
// ids, the room and session tokens, and:
//
//   - Service, which applies the presence rules through a Store;
//   - Realtime, the real-time core of a node, transport-independent: its
//     connections (Conn) join rooms, watch rooms by room token and leave
//     them; it follows the rooms they use through a Subscriber, delivers
//     each room's typed events in version order, and resyncs a room when
//     events were missed; its connections also watch users across rooms
//     (WatchUsers: a user's org-wide online state, UserPresence, followed
//     once per node through a UserSubscriber);
//   - Keeper, which holds the sessions of a node's connections by the node's
//     lease (node liveness);
//   - Sequencer, one connection's version order.
//
// It imports only the standard library. Adapters live in sibling packages:
// redisstore (the Store and Subscriber on Redis, with the Lua scripts; the
// only code that knows how events are encoded), httpapi (Echo and
// WebSockets: a frame codec around Conn) and auth (JWT verification with
// jwx); package node wires them. presencetest has an in-memory Store and
// Subscriber for fast unit tests, held to the same contract suite
// (storetest) as Redis.
package presence
