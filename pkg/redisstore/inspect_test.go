package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
)

// TestInspect: the read-only views presencectl shows (Sessions,
// RoomCounts, ScanRooms) read what the scripts wrote, on every backend.
func TestInspect(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			h := newHarness(t, b, redisstore.Config{})
			t0 := h.clock()
			gen := "n1@local/aaaa"
			if !h.renew(gen, time.Time{}, t0.Add(10*sec)) {
				t.Fatal("registration refused")
			}
			// lobby: ada (s2: 20 s, s1: 4 s), carl held by gen; quiet: bob,
			// gone; and rooms of another org.
			h.beat("ada", "lobby", "s2", 20*sec)
			h.beat("ada", "lobby", "s1", 4*sec)
			h.hold(gen, "carl", "lobby", "s3")
			if err := h.svc.Disconnect(ctx, h.beat("bob", "quiet", "s4", 10*sec).SessionToken); err != nil {
				t.Fatal(err)
			}
			other := &harness{t: t, rdb: h.rdb, store: h.store, svc: h.svc, prefix: h.prefix, org: "other", now: t0}
			other.beat("eve", "lobby", "s5", 10*sec)
			other.beat("eve", "elsewhere", "s6", 10*sec)

			lobby := presence.RoomRef{Org: h.org, RoomID: "lobby"}
			got, err := h.store.Sessions(ctx, lobby)
			if err != nil {
				t.Fatal(err)
			}
			want := []redisstore.SessionInfo{
				{SessionID: "s1", UserID: "ada", Deadline: t0.Add(10 * sec)},
				{SessionID: "s2", UserID: "ada", Deadline: t0.Add(50 * sec)},
				{SessionID: "s3", UserID: "carl", Node: gen, Held: true},
			}
			if len(got) != len(want) {
				t.Fatalf("sessions = %+v", got)
			}
			for i, w := range want {
				g := got[i]
				if g.Epoch == "" {
					t.Errorf("session %s has no epoch", g.SessionID)
				}
				g.Epoch = ""
				if g.SessionID != w.SessionID || g.UserID != w.UserID || g.Node != w.Node || g.Held != w.Held || !g.Deadline.Equal(w.Deadline) {
					t.Errorf("session %d = %+v, want %+v", i, g, w)
				}
			}
			if got, err := h.store.Sessions(ctx, presence.RoomRef{Org: h.org, RoomID: "nowhere"}); err != nil || len(got) != 0 {
				t.Errorf("sessions of a room without keys = %+v, %v", got, err)
			}

			// RoomCounts agrees with Count, in the order asked, without the
			// rooms that have no keys.
			counts, err := h.store.RoomCounts(ctx, h.org, []string{"quiet", "nowhere", "lobby"})
			if err != nil {
				t.Fatal(err)
			}
			var wantCounts []presence.RoomCount
			for _, id := range []string{"quiet", "lobby"} {
				c, err := h.store.Count(ctx, presence.RoomRef{Org: h.org, RoomID: id})
				if err != nil {
					t.Fatal(err)
				}
				wantCounts = append(wantCounts, *c)
			}
			if fmt.Sprint(counts) != fmt.Sprint(wantCounts) || counts[1].Online != 2 || counts[1].Sessions != 3 || counts[0].Version == 0 {
				t.Errorf("counts = %+v, want %+v", counts, wantCounts)
			}

			// ScanRooms finds each room of the org once, on every master.
			scan := func(org string) []string {
				var ids []string
				if err := h.store.ScanRooms(ctx, org, func(page []string) error {
					ids = append(ids, page...)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				slices.Sort(ids)
				return ids
			}
			if got := scan(h.org); fmt.Sprint(got) != "[lobby quiet]" {
				t.Errorf("rooms of %s = %v", h.org, got)
			}
			if got := scan("other"); fmt.Sprint(got) != "[elsewhere lobby]" {
				t.Errorf("rooms of other = %v", got)
			}
			stop := errors.New("stop")
			if err := h.store.ScanRooms(ctx, h.org, func([]string) error { return stop }); !errors.Is(err, stop) {
				t.Errorf("ScanRooms returned %v, not fn's error", err)
			}

			// A session field that is not one is skipped.
			if err := h.rdb.HSet(ctx, h.store.Keys().Room(lobby).Hash(), "s:bad", "garbage").Err(); err != nil {
				t.Fatal(err)
			}
			if got, err := h.store.Sessions(ctx, lobby); err != nil || len(got) != 3 {
				t.Errorf("sessions with a malformed field = %+v, %v", got, err)
			}
		})
	}
}

// TestGlobEscape: an escaped string matches only itself in a Redis pattern.
func TestGlobEscape(t *testing.T) {
	if got := redisstore.GlobEscape(`a*b?[c]\d-e^`); got != `a\*b\?\[c\]\\d\-e\^` {
		t.Errorf("GlobEscape = %q", got)
	}
}
