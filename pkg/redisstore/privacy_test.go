package redisstore_test

import (
	"encoding/json"
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/storetest"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
)

// TestWebhookPrivacy: webhooks follow the room events of an invisible
// member: turning invisible is a leave (the member offline), visible again
// a join; its sessions coming and going send nothing; a member that
// arrives invisible sends no join or leave.
func TestWebhookPrivacy(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, nil)
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL()}) // join,leave
	h := n.contract()
	h.Beat("u2", "lobby", "s2", 0)
	h.Beat("u1", "lobby", "s1", 0)
	h.BeatPrivacy("u1", "lobby", "s1", storetest.On, storetest.On)
	h.Beat("u1", "lobby", "s3", 0) // a second session, invisible
	h.BeatPrivacy("u3", "lobby", "s4", storetest.On, nil)
	h.BeatPrivacy("u3", "lobby", "s4", nil, nil)
	h.BeatPrivacy("u1", "lobby", "s1", storetest.Off, nil)
	h.Beat("u9", "lobby", "s9", 0) // the last one: the room's events come in order
	rooms := checkDelivered(t, rec, 5, false)
	got := ""
	for _, e := range rooms["lobby"] {
		got += e.Event[:1] + e.UserID + " "
		var m presence.Member
		if err := json.Unmarshal(e.Member, &m); err != nil {
			t.Fatal(err)
		}
		if e.UserID == "u1" && e.Event == "leave" && (m.Online || m.Sessions != 0 || m.LastDisconnected != 0) {
			t.Errorf("the leave of turning invisible (last seen hidden): %s", e.Member)
		}
		if e.UserID == "u1" && e.Event == "join" && e.Version > 2 && (!m.Online || m.Sessions != 2) {
			t.Errorf("the join of turning visible: %s", e.Member)
		}
	}
	if want := "ju2 ju1 lu1 ju1 ju9 "; got != want {
		t.Fatalf("webhook events %q, want %q", got, want)
	}
}
