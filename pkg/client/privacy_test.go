package client_test

import (
	"fmt"
	"testing"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/redistest"
)

// Privacy from the Go client: a Conn configured invisible joins unseen;
// SetPrivacy turns it visible (a join for a watcher on another node) and
// invisible again (a leave); the HTTP heartbeat carries the flags; an
// admin (auth off: anyone) lists invisible members with
// MembersIncludeInvisible.
func TestPrivacy(t *testing.T) {
	nodes := startNodes(t, redistest.Start(t), 2)
	hc := &client.Client{BaseURL: nodes[0].url}
	watcher := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "wat"})
	mustJoin(t, watcher, "r", "w1", 0, "")
	yes, no := true, false
	ada := dial(t, client.ConnConfig{URLs: []string{nodes[1].url}, UserID: "ada", Invisible: &yes})
	mustJoin(t, ada, "r", "a1", 0, "")
	online := func(user string) error {
		for _, m := range watcher.View("r").Members {
			if m.UserID == user && m.Online {
				return nil
			}
		}
		return fmt.Errorf("%s not online: %s", user, listString(watcher.View("r")))
	}
	offline := func(user string) error {
		if online(user) == nil {
			return fmt.Errorf("%s online: %s", user, listString(watcher.View("r")))
		}
		return nil
	}
	eventually(t, "ada offline to the watcher", func() error { return offline("ada") })
	l, err := hc.MembersIncludeInvisible(ctx(t), "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range l.Members {
		found = found || m.UserID == "ada" && m.Invisible && m.Online && m.Sessions == 1
	}
	if !found {
		t.Fatalf("includeInvisible: %s", listString(l))
	}
	if err := ada.SetPrivacy(ctx(t), &no, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ada online to the watcher", func() error { return online("ada") })
	if err := ada.SetPrivacy(ctx(t), &yes, &yes); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ada offline again, last seen hidden", func() error {
		for _, m := range watcher.View("r").Members {
			if m.UserID == "ada" && (m.Online || m.LastDisconnected != 0) {
				return fmt.Errorf("ada: %+v", m)
			}
		}
		return offline("ada")
	})
	// The HTTP heartbeat: bob joins visible, then turns invisible.
	if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "r", SessionID: "b1", UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob online", func() error { return online("bob") })
	if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "r", SessionID: "b1", UserID: "bob", Invisible: &yes}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob offline", func() error { return offline("bob") })
	if n, err := hc.Count(ctx(t), "r"); err != nil || n.Online != 1 || n.Sessions != 1 {
		t.Fatalf("count = %+v, %v", n, err)
	}
}
