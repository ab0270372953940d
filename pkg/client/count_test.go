package client_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/redistest"
)

func TestWatchCount(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, redistest.Start(t), 2)
	var frames, others atomic.Int64
	w := dial(t, client.ConnConfig{URLs: []string{nodes[0].url, nodes[1].url}, UserID: "watcher", Reconnect: true,
		OnEvent: func(e client.Event) {
			switch e.Type {
			case "count":
				frames.Add(1)
			case "presence", "sync":
				others.Add(1)
			}
		}})
	ada := dial(t, client.ConnConfig{URLs: []string{nodes[1].url}, UserID: "ada"})
	j := mustJoin(t, ada, "big", "t", time.Minute, "")
	n, err := w.WatchCount(ctx(t), j.RoomToken)
	if err != nil || n.RoomID != "big" || n.Online != 1 || n.Sessions != 1 || n.Version != j.Version {
		t.Fatalf("WatchCount = %+v, %v", n, err)
	}
	if got, ok := w.Count("big"); !ok || got != *n {
		t.Fatalf("Count = %+v %v", got, ok)
	}
	if w.View("big") != nil {
		t.Fatal("a count-mode room has a view")
	}
	hc := &client.Client{BaseURL: nodes[1].url}
	counted := func(online int64) func() error {
		return func() error {
			if got, _ := w.Count("big"); got.Online != online {
				return fmt.Errorf("count %+v", got)
			}
			return nil
		}
	}
	for i := range 10 {
		if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "big", SessionID: fmt.Sprintf("s%d", i), UserID: fmt.Sprintf("u%d", i), Interval: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "11 online", counted(11))
	// Reconnected, the room is watched in count mode again.
	w.DropConnection()
	if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "big", SessionID: "late", UserID: "late", Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "12 online after the reconnect", counted(12))
	if err := w.Unwatch(ctx(t), "big"); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Count("big"); ok {
		t.Fatal("an unwatched room has counts")
	}
	if frames.Load() == 0 || others.Load() != 0 {
		t.Fatalf("%d count frames, %d presence or sync frames", frames.Load(), others.Load())
	}
}
