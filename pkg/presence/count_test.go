package presence_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// countSink records the counts a count watcher gets, with when they came.
type countSink struct {
	mu     sync.Mutex
	counts []presence.RoomCount
	at     []time.Time
	other  int // events and syncs: none may come
}

func (s *countSink) Push(u *presence.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.Count == nil {
		s.other++
		return
	}
	s.counts = append(s.counts, *u.Count)
	s.at = append(s.at, time.Now())
}

func (s *countSink) SessionEnded(presence.RoomRef) {}

func (s *countSink) last() (presence.RoomCount, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.counts) == 0 {
		return presence.RoomCount{}, 0, s.other
	}
	return s.counts[len(s.counts)-1], len(s.counts), s.other
}

// countReads counts the store's count reads.
func countReads(n *rtNode) *atomic.Int64 {
	var reads atomic.Int64
	n.store.FailFunc(func(op string) error {
		if op == "Count" {
			reads.Add(1)
		}
		return nil
	})
	return &reads
}

func TestRealtimeCountMode(t *testing.T) {
	t.Parallel()
	n := newRTNode(t, presence.RealtimeConfig{})
	out := n.beat(t, "ada", "big")
	s1, s2 := &countSink{}, &countSink{}
	w1, w2 := n.rt.Connect(s1), n.rt.Connect(s2)
	reads := countReads(n)
	room, c, joined, err := w1.WatchCount(as("wes"), out.RoomToken)
	if err != nil || joined || room != ref("big") || c.Online != 1 || c.Sessions != 1 || c.Version != out.Version {
		t.Fatalf("watch count = %v %+v %v %v", room, c, joined, err)
	}
	if _, _, _, err := w2.WatchCount(as("wes"), out.RoomToken); err != nil {
		t.Fatal(err)
	}
	reads.Store(0) // the watches' own reads

	// A burst: 30 joins at once, then 30 more a little later.
	start := time.Now()
	for i := range 30 {
		n.beat(t, fmt.Sprintf("u%d", i), "big")
	}
	time.Sleep(300 * time.Millisecond)
	for i := range 30 {
		n.beat(t, fmt.Sprintf("v%d", i), "big")
	}
	last := time.Now()
	want := n.version(t, "big")
	waitFor(t, "the last count", func() bool { c, _, _ := s1.last(); return c.Version == want })
	if d := time.Since(last); d > 2500*time.Millisecond { // 1 s, generously
		t.Errorf("the last count came %v after the last change", d)
	}
	for _, s := range []*countSink{s1, s2} {
		c, frames, other := s.last()
		if c.Online != 61 || c.Sessions != 61 || other != 0 {
			t.Errorf("count %+v, %d events or syncs", c, other)
		}
		s.mu.Lock()
		for i := 1; i < len(s.at); i++ {
			if gap := s.at[i].Sub(s.at[i-1]); gap < 900*time.Millisecond {
				t.Errorf("counts %d and %d came %v apart", i-1, i, gap)
			}
		}
		s.mu.Unlock()
		if max := int(time.Since(start)/time.Second) + 2; frames > max {
			t.Errorf("%d count frames in %v", frames, time.Since(start))
		}
	}
	// One read per refresh, shared by both watchers.
	if r, _, _ := s1.last(); reads.Load() > int64(len(s1.counts))+1 {
		t.Errorf("%d count reads for %d frames (last %+v)", reads.Load(), len(s1.counts), r)
	}
	// Idle: nothing is read.
	before := reads.Load()
	time.Sleep(1200 * time.Millisecond)
	if reads.Load() != before {
		t.Errorf("%d count reads while idle", reads.Load()-before)
	}

	// A lost subscription: the count watchers get a fresh count.
	_, frames, _ := s1.last()
	n.store.Resubscribe()
	waitFor(t, "a count after resubscribing", func() bool { _, f, _ := s1.last(); return f > frames })

	// Unwatched: no counts any more.
	if left, err := w1.Unwatch("big"); err != nil || !left.Dropped {
		t.Fatalf("unwatch = %+v %v", left, err)
	}
	_, frames1, _ := s1.last()
	_, frames2, _ := s2.last()
	n.beat(t, "late", "big")
	waitFor(t, "w2's count of the late join", func() bool { _, f, _ := s2.last(); return f > frames2 })
	if _, f, _ := s1.last(); f != frames1 {
		t.Errorf("an unwatched connection got %d counts", f-frames1)
	}
	w2.Close(true)
	w1.Close(true)
}

func TestRealtimeCountModeAndMembers(t *testing.T) {
	t.Parallel()
	n := newRTNode(t, presence.RealtimeConfig{MaxRooms: 2})
	out := n.beat(t, "ada", "r1")
	s := &countSink{}
	w := n.rt.Connect(s)
	// Joined and counted: events and counts.
	n.join(t, w, "wes", "r1", "tab")
	if _, _, joined, err := w.WatchCount(as("wes"), out.RoomToken); err != nil || !joined {
		t.Fatalf("watch count of a joined room: %v %v", joined, err)
	}
	n.beat(t, "bob", "r1")
	waitFor(t, "the count of bob's join", func() bool { c, _, _ := s.last(); return c.Online == 3 })
	if _, _, other := s.last(); other == 0 {
		t.Error("a joined room's events stopped")
	}
	// The room limit counts a count watch like a watch.
	o2 := n.beat(t, "ada", "r2")
	o3 := n.beat(t, "ada", "r3")
	if _, _, _, err := w.WatchCount(as("wes"), o2.RoomToken); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := w.WatchCount(as("wes"), o3.RoomToken); presence.ErrorCode(err) != presence.ELIMIT {
		t.Fatalf("a third room: %v", err)
	}
	// Watching r2 in members mode replaces its count watch.
	if _, l, err := w.Watch(as("wes"), o2.RoomToken); err != nil || len(l.Members) != 1 {
		t.Fatalf("watch r2: %v", err)
	}
	_, frames, _ := s.last()
	n.beat(t, "bob", "r2")
	time.Sleep(1200 * time.Millisecond)
	if c, f, _ := s.last(); f != frames {
		t.Errorf("a count of a room watched in members mode: %+v", c)
	}
	w.Close(true)
}

func TestRealtimeCountModeRemovedRoom(t *testing.T) {
	t.Parallel()
	n := newRTNode(t, presence.RealtimeConfig{})
	out := n.beat(t, "ada", "gone")
	s := &countSink{}
	w := n.rt.Connect(s)
	if _, _, _, err := w.WatchCount(as("wes"), out.RoomToken); err != nil {
		t.Fatal(err)
	}
	admin := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: testOrg, Admin: true})
	if err := n.svc.RemoveRoom(admin, "gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed room's count", func() bool { c, f, _ := s.last(); return f > 0 && c.Online == 0 })
	_, frames, _ := s.last()
	n.beat(t, "bob", "gone") // the room's new life
	time.Sleep(1200 * time.Millisecond)
	if c, f, _ := s.last(); f != frames {
		t.Errorf("a removed room's token counts its new life: %+v", c)
	}
	// Its token counts an empty room.
	if _, c, _, err := w.WatchCount(as("wes"), out.RoomToken); err != nil || c.Online != 0 {
		t.Fatalf("watch count with a removed room's token = %+v %v", c, err)
	}
	w.Close(true)
}

func TestRealtimeCountModeStoreLostData(t *testing.T) {
	t.Parallel()
	n := newRTNode(t, presence.RealtimeConfig{})
	out := n.beat(t, "ada", "r")
	n.beat(t, "bob", "r")
	n.beat(t, "carol", "r")
	s := &countSink{}
	w := n.rt.Connect(s)
	if _, _, _, err := w.WatchCount(as("wes"), out.RoomToken); err != nil {
		t.Fatal(err)
	}
	n.beat(t, "dave", "r")
	waitFor(t, "dave's count", func() bool { c, _, _ := s.last(); return c.Online == 4 })
	n.store.LoseData()
	n.beat(t, "eve", "r") // version 1 of the room's data anew
	waitFor(t, "the count after the loss", func() bool { c, _, _ := s.last(); return c.Online == 1 && c.Version == 1 })
	w.Close(true)
}
