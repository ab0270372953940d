package client_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

// TestStormView: in a storm (1,200 joins, leaves and data updates from
// another node, far above the 20 frames a second a socket gets per room)
// the Conn gets batches, and its view ends equal to the room's list: every
// member, its state and data, in the room order.
func TestStormView(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, redistest.Start(t), 2)
	w := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "watcher"})
	j := mustJoin(t, w, "storm", "w", time.Minute, "")
	hc := &client.Client{BaseURL: nodes[1].url}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 400; i += 4 {
				u := fmt.Sprintf("u%03d", i)
				hb, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "storm", SessionID: "s" + u, UserID: u, Interval: time.Minute})
				if err == nil {
					err = hc.SetData(ctx(t), "storm", u, json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)))
				}
				if err == nil && i%2 == 0 {
					err = hc.Disconnect(ctx(t), hb.SessionToken)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want, err := hc.ListAll(ctx(t), j.RoomToken, 1000)
	if err != nil {
		t.Fatal(err)
	}
	str := func(l *presence.RoomList) string {
		b, _ := json.Marshal(l.Members)
		return fmt.Sprintf("@%d %s", l.Version, b)
	}
	eventually(t, "the view equals the list", func() error {
		if v := w.View("storm"); v == nil || str(v) != str(want) {
			return fmt.Errorf("the view differs from the list at %d", want.Version)
		}
		return nil
	})
	if st := w.Stats(); st.Batches == 0 {
		t.Fatalf("no batch: %+v", st)
	}
}
