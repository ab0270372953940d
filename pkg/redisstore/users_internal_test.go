package redisstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// A node that dies between a room script and the user's second step leaves
// the user's mark in the room; the reaper runs the step when it visits the
// room, and the watchers get the change once.
func TestUserStepHealsAfterNodeDeath(t *testing.T) {
	s, rdb := openQuietStore(t)
	ctx := context.Background()
	ps := rdb.Subscribe(ctx, s.keys.UserChannel("o", "ada"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // subscribed
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		m, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("no user event: %v", err)
		}
		return m.(interface{ String() string }).String()
	}
	room := presence.RoomRef{Org: "o", RoomID: "r"}
	now := time.Now()
	hb := &presence.Heartbeat{Room: room, UserID: "ada", SessionID: "s1", Now: now, Deadline: now.Add(time.Minute)}
	res, err := s.Heartbeat(ctx, hb)
	if err != nil {
		t.Fatal(err)
	}
	if got := next(); got != `Message<`+s.keys.UserChannel("o", "ada")+`: {"userId":"ada","online":true,"lastDisconnected":0,"rooms":1}>` {
		t.Fatalf("join: %s", got)
	}
	rk := s.keys.Room(room)
	if rdb.HExists(ctx, rk.Hash(), "u:ada").Val() {
		t.Fatal("the mark stayed after the step")
	}
	// The leave's room script alone: its node died before the second step.
	left := now.Add(time.Second)
	if err := s.endSession.Run(ctx, rdb, rk.List[:], left.UnixMilli(), rk.Events, s.pub, s.ttl, "s1", res.SessionEpoch).Err(); err != nil {
		t.Fatal(err)
	}
	if !rdb.HExists(ctx, rk.Hash(), "u:ada").Val() {
		t.Fatal("no mark left by the room script")
	}
	if p, _ := s.UsersPresence(ctx, "o", []string{"ada"}); p[0].Online {
		t.Fatalf("reads are the truth at once: %+v", p)
	}
	// The reaper comes by the room's old earliest deadline (the index).
	if _, err := s.Reap(ctx, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	want := `Message<` + s.keys.UserChannel("o", "ada") + `: {"userId":"ada","online":false,"lastDisconnected":` + itoa(left.UnixMilli()) + `,"rooms":0}>`
	if got := next(); got != want {
		t.Fatalf("healed: %s, want %s", got, want)
	}
	if rdb.HExists(ctx, rk.Hash(), "u:ada").Val() {
		t.Fatal("the mark stayed after the reaper's step")
	}
	// Once: running the step again publishes nothing.
	s.syncUsers(ctx, stepsOf(room, left.UnixMilli(), []string{"ada"}))
	if m, err := ps.ReceiveTimeout(ctx, 300*time.Millisecond); err == nil {
		t.Fatalf("published twice: %v", m)
	}
}

// A sign-out of sessions held by another node's socket (a room with no
// deadline, whose holder lives) through a node that dies before the second
// step: the deadline index entry sent with the room script brings a reaper
// to the room, which runs the step.
func TestUserStepHealsAfterSignOutNodeDeath(t *testing.T) {
	s, rdb := openQuietStore(t)
	ctx := context.Background()
	room := presence.RoomRef{Org: "o", RoomID: "r"}
	now := time.Now()
	hb := &presence.Heartbeat{Room: room, UserID: "ada", SessionID: "s1", Now: now, Held: true, Node: "n1@local/1"}
	if _, err := s.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.UsersPresence(ctx, "o", []string{"ada"}); !p[0].Online {
		t.Fatalf("joined: %+v", p)
	}
	ps := rdb.Subscribe(ctx, s.keys.UserChannel("o", "ada"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// The sign-out's room script alone (its node died before the step).
	rk := s.keys.Room(room)
	if _, err := s.runWithVisit(ctx, room, now, s.endUser, rk.List[:], now.UnixMilli(), rk.Events, s.pub, s.ttl, "ada", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reap(ctx, now.Add(visitDelay)); err != nil {
		t.Fatal(err)
	}
	m, err := ps.ReceiveTimeout(ctx, 5*time.Second)
	if err != nil || !strings.Contains(m.(interface{ String() string }).String(), `"online":false`) {
		t.Fatalf("healed: %v, %v", m, err)
	}
}
