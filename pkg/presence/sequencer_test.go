package presence_test

import (
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
)

func TestSequencer(t *testing.T) {
	r := presence.RoomRef{Org: "o", RoomID: "r"}
	other := presence.RoomRef{Org: "o", RoomID: "other"}
	q := presence.NewSequencer()

	// Before its snapshot, a room's events are not the client's.
	if got := q.Event(r, 5); got != presence.Skip {
		t.Fatalf("event before snapshot: %v", got)
	}
	if q.Sync(r, 5) {
		t.Fatal("a sync of a room the client does not have was taken")
	}
	// The snapshot is older than an event that came first: a sync follows.
	if got := q.Snapshot(r, 4); got != 5 {
		t.Fatalf("snapshot at 4 after an event at 5: resync to %d, want 5", got)
	}
	// A snapshot at least as new as what came first needs nothing more.
	q.Event(other, 3)
	if got := q.Snapshot(other, 3); got != 0 {
		t.Fatalf("snapshot at 3 after an event at 3: resync to %d, want none", got)
	}

	for _, tc := range []struct {
		version int64
		want    presence.Step
	}{
		{4, presence.Skip},   // in the snapshot already
		{5, presence.Write},  // the next one
		{5, presence.Skip},   // a duplicate
		{3, presence.Skip},   // older
		{7, presence.Resync}, // 6 was missed
		{6, presence.Write},  // the version did not move on the gap
	} {
		if got := q.Event(r, tc.version); got != tc.want {
			t.Fatalf("event %d: got %v, want %v", tc.version, got, tc.want)
		}
	}
	if !q.Sync(r, 10) {
		t.Fatal("a sync of the client's room was refused")
	}
	if got := q.Event(r, 10); got != presence.Skip {
		t.Fatalf("event at the sync's version: %v", got)
	}
	if got := q.Event(r, 11); got != presence.Write {
		t.Fatalf("event after the sync: %v", got)
	}
	if n := len(q.Rooms()); n != 2 {
		t.Fatalf("rooms: %d, want 2", n)
	}
	q.Forget(r)
	if got := q.Event(r, 12); got != presence.Skip {
		t.Fatalf("event of a forgotten room: %v", got)
	}
	if n := len(q.Rooms()); n != 1 {
		t.Fatalf("rooms after forget: %d, want 1", n)
	}
}
