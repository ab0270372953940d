package presence_test

import (
	"fmt"
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
)

// The users-across-rooms core on a MemStore (no user channels there: the
// events are the store's, tested on Redis in package httpapi).

func TestSummarizeRooms(t *testing.T) {
	got := presence.SummarizeRooms("u", []presence.UserRoom{{Online: false, LastDisconnected: 5}, {Online: true}, {Online: true}})
	if got != (presence.UserPresence{UserID: "u", Online: true, Rooms: 2}) {
		t.Fatalf("online: %+v", got)
	}
	got = presence.SummarizeRooms("u", []presence.UserRoom{{LastDisconnected: 5}, {LastDisconnected: 9}})
	if got != (presence.UserPresence{UserID: "u", LastDisconnected: 9}) {
		t.Fatalf("offline: %+v", got)
	}
}

func TestWatchUsersCore(t *testing.T) {
	n := newRTNode(t, presence.RealtimeConfig{})
	c, _ := n.connect()
	ids := func(from, k int) []string {
		var out []string
		for i := from; i < from+k; i++ {
			out = append(out, fmt.Sprint("u", i))
		}
		return out
	}
	joiner, _ := n.connect()
	n.join(t, joiner, "u3", "r1", "s1")
	n.join(t, joiner, "u3", "r2", "s2") // a socket has one session per room
	got, err := c.WatchUsers(as("w"), ids(0, 600))
	if err != nil || len(got) != 600 || got[3] != (presence.UserPresence{UserID: "u3", Online: true, Rooms: 2}) || got[0].Online {
		t.Fatalf("WatchUsers = %v, %v", got[:4], err)
	}
	c.RecheckUsers(as("w"))
	// The limit counts users across calls; a refusal changes nothing.
	if _, err := c.WatchUsers(as("w"), ids(550, 451)); presence.ErrorCode(err) != presence.ELIMIT {
		t.Fatalf("over the limit: %v", err)
	}
	if len(c.WatchedUsers()) != 600 {
		t.Fatalf("watched after a refusal: %d", len(c.WatchedUsers()))
	}
	if _, err := c.WatchUsers(as("w"), ids(550, 450)); err != nil {
		t.Fatalf("up to the limit: %v", err)
	}
	c.RecheckUsers(as("w"))
	for _, bad := range [][]string{nil, {""}, {"a\x00b"}} {
		if _, err := c.WatchUsers(as("w"), bad); presence.ErrorCode(err) != presence.EINVALID {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	// A socket sends a user's state only when it differs from the last
	// one it sent.
	c.SentUsers(got)
	if c.PassUser(presence.UserPresence{UserID: "u3", Online: true}) {
		t.Fatal("the same state twice")
	}
	if !c.PassUser(presence.UserPresence{UserID: "u3"}) || c.PassUser(presence.UserPresence{UserID: "u3"}) {
		t.Fatal("a change passes once")
	}
	c.UnwatchUsers([]string{"u3"})
	if c.PassUser(presence.UserPresence{UserID: "u3", Online: true}) {
		t.Fatal("an unwatched user passes")
	}
	c.Close(true)
	if len(c.WatchedUsers()) != 0 {
		t.Fatal("watched users after close")
	}
}
