// Package presencetest is an in-memory presence.Store (MemStore) and
// presence.Subscriber (MemSubscriber) for fast, deterministic unit tests of
// the real-time core (the Service, the Keeper, the WebSocket hub): no Redis,
// no goroutines of its own, no clock (times are passed in, as to any Store).
//
// It is not a toy: it follows the Lua scripts of redisstore rule for rule
// (versions, join order, second sessions, held sessions and node leases,
// "ended" notices, room and session epochs, offline retention and pruning,
// the session limit, conflicts), and it is held to the same contract suite
// as Redis, Redis Cluster and the embedded store (package storetest; see
// memstore_test.go here and TestStoreContract in redisstore).
//
// Faults a test can inject:
//
//   - Fail(err) makes every call fail with err until Fail(nil); FailFunc
//     picks the calls (by method name) that fail.
//   - DropEvents(n) loses the next n published events, as a subscriber's
//     lost messages would (the hub then sees a version gap).
//   - LoseData forgets everything, as a Redis that restarted empty: versions
//     start over, leases are gone, and LostData reports true once.
//   - Resubscribe tells every subscriber's handler that each of its rooms'
//     subscriptions was restored (OnResubscribe), as after a lost pub/sub
//     connection; Restart is LoseData then Resubscribe.
//
// Events and Calls let a test see what was published and called.
package presencetest
