package presence_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
)

// BenchmarkFanout hands b.N events of one room to the real-time core, as
// its subscriber does, with N connections watching the room. Each
// connection's Sink queues the shared Update on a channel that a goroutine
// drains through the connection's Sequencer (a socket's writer, without
// encoding or I/O). An op is one event reaching all N connections;
// ns/delivery is per connection.
func BenchmarkFanout(b *testing.B) {
	for _, conns := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { benchFanout(b, conns) })
	}
}

// chanSink is a connection whose writer runs on another goroutine.
type chanSink chan *presence.Update

func (s chanSink) Push(u *presence.Update)     { s <- u }
func (chanSink) SessionEnded(presence.RoomRef) {}

func benchFanout(b *testing.B, conns int) {
	n, room := newRTNode(b, presence.RealtimeConfig{}), ref("r")
	host, err := n.svc.Heartbeat(as("host"), presence.HeartbeatInput{RoomID: "r", SessionID: "s-host"})
	if err != nil {
		b.Fatal(err)
	}
	member := &presence.Member{UserID: "host", Online: true, Sessions: 1, Data: json.RawMessage(`{"typing":true}`)}
	events := make([]presence.Event, b.N)
	for i := range events {
		events[i] = presence.Event{Room: room, Version: host.Version + 1 + int64(i), Kind: presence.EventUpdate, UserID: "host", Member: member}
	}
	last := host.Version + int64(b.N)

	var drained sync.WaitGroup
	var outOfOrder atomic.Int64
	for range conns {
		s := make(chanSink, 64)
		_, l, err := n.rt.Connect(s).Watch(as("wes"), host.RoomToken)
		if err != nil {
			b.Fatal(err)
		}
		drained.Add(1)
		go func() {
			defer drained.Done()
			q := presence.NewSequencer()
			q.Snapshot(room, l.Version)
			for u := range s {
				if q.Event(u.Room, u.Version) != presence.Write {
					outOfOrder.Add(1)
				}
				if u.Version == last {
					return
				}
			}
		}()
	}

	b.ReportAllocs()
	b.ResetTimer()
	for i := range events {
		n.rt.OnEvent(events[i])
	}
	drained.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/delivery")
	if k := outOfOrder.Load(); k > 0 {
		b.Fatalf("%d updates out of order", k)
	}
	if got, want := n.rt.Delivered(), int64(b.N*conns); got != want {
		b.Fatalf("delivered %d, want %d", got, want)
	}
}
