// Package redisstore is the presence.Store on Redis: every state change is
// one Lua script from the top-level lua package, run with EVALSHA; room
// changes are published by the scripts on the room's events channel; a
// reaper ends sessions past their deadline using an index of deadlines.
// With webhooks on, the scripts also keep each event in the room's outbox,
// and senders on every node POST them (webhooks.go). Users' org-wide states
// are computed from the user index and the rooms; their changes are
// published by a second step in the user's slot after the room scripts that
// report them (users.go).
//
// It also runs the embedded in-process store (miniredis) that a node uses
// when no Redis is configured: the same scripts, the same code path.
//
// It imports the presence core and go-redis; never httpapi or auth.
package redisstore
