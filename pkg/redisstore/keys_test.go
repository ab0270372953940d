package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// Keys.Room builds its names in one allocation; they must be the names
// the plain concatenations give.
func TestRoomKeys(t *testing.T) {
	k := Keys{Prefix: "presence"}
	for _, r := range []presence.RoomRef{{Org: "default", RoomID: "r1"}, {Org: "o", RoomID: "a/b::c é"}, {Org: "x", RoomID: ""}} {
		rk := k.Room(r)
		base := k.Prefix + ":{" + r.Org + "::" + r.RoomID + "}:"
		want := RoomKeys{Tag: Tag(r), List: [3]string{base + "room", base + "order", base + "profile"}, Events: base + "events", Webhooks: base + "webhooks"}
		if rk != want {
			t.Errorf("Room(%v) = %+v, want %+v", r, rk, want)
		}
	}
	r := presence.RoomRef{Org: "default", RoomID: "room-1"}
	if n := testing.AllocsPerRun(100, func() { _ = k.Room(r) }); n != 1 {
		t.Errorf("Room: %v allocations, want 1", n)
	}
}

// A heartbeat's EVALSHA costs one allocation (its keys): the call and its
// command are pooled and no argument is boxed on its own.
func TestHeartbeatCallAllocations(t *testing.T) {
	s := NewStore(nil, Config{})
	hb := &presence.Heartbeat{Room: presence.RoomRef{Org: "default", RoomID: "r1"}, UserID: "u1", SessionID: "s1",
		Now: time.Now(), Deadline: time.Now().Add(25 * time.Second)}
	ctx := context.Background()
	n := testing.AllocsPerRun(100, func() { s.heartbeatCall(ctx, hb).release() })
	if n != 1 && !raceEnabled {
		t.Errorf("heartbeatCall: %v allocations, want 1", n)
	}
	c := s.heartbeatCall(ctx, hb)
	defer c.release()
	// One Redis: 5 keys (the webhook outbox, "" when webhooks are off, and
	// the deadline index too); 20 ARGV (the last two, the privacy flags,
	// "" for a heartbeat that has none).
	if args := c.cmd.Args(); len(args) != 28 || args[26] != "" || args[27] != "" || args[0] != "evalsha" || args[2] != 5 || args[6] != "" || c.cmd.Name() != "evalsha" {
		t.Errorf("command %v", args)
	}
	cl := NewStore(nil, Config{Cluster: true})
	cc := cl.heartbeatCall(ctx, hb)
	defer cc.release()
	if args := cc.cmd.Args(); len(args) != 26 || args[2] != 3 {
		t.Errorf("cluster command %v", args)
	}
}

// The user index cache: an entry is due once per period (at least one, at
// most two), and a heartbeat's look-up allocates nothing.
func TestIndexCacheDue(t *testing.T) {
	c := newIndexCache(time.Minute)
	t0 := time.Now()
	a, b := indexKey{"o", "u1", "r1"}, indexKey{"o", "u1", "r2"}
	if !c.due(a, t0) || c.due(a, t0) || !c.due(b, t0) {
		t.Fatal("a new entry is due once")
	}
	if c.due(a, t0.Add(61*time.Second)) {
		t.Error("due again after one period")
	}
	if !c.due(a, t0.Add(122*time.Second)) {
		t.Error("not due after two periods")
	}
	// An entry asked for all the time is written again every one to two
	// periods, not only once.
	c, n := newIndexCache(time.Minute), 0
	for d := time.Duration(0); d < 10*time.Minute; d += 10 * time.Second {
		if c.due(a, t0.Add(d)) {
			n++
		}
	}
	if n < 5 || n > 10 {
		t.Errorf("due %d times in 10 periods", n)
	}
	if n := testing.AllocsPerRun(100, func() { c.due(a, t0.Add(122*time.Second)) }); n != 0 {
		t.Errorf("due: %v allocations", n)
	}
}
