package client

// An internal benchmark: the view is reached through a Conn only, and a
// storm's cost on the client is the view's.

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
)

// BenchmarkViewStorm applies a storm to a view: 10,000 members join a
// room, as 200 single events and 300 batches (what a watcher gets with
// PRESENCE_WS_ROOM_FRAMES 20 while 10,000 join in 10 s), then reads the
// view once.
func BenchmarkViewStorm(b *testing.B) {
	const members = 10000
	ms := make([]presence.Member, members)
	for i := range ms {
		ms[i] = presence.Member{UserID: "u" + strconv.Itoa(i), Online: true, Sessions: 1}
	}
	b.ReportAllocs()
	for b.Loop() {
		v := newView("r", 0, nil)
		i := 0
		for i < 200 {
			v.event(int64(i+1), presence.EventJoin, &ms[i])
			i++
		}
		per := (members - i) / 300
		for i < members {
			n := min(per, members-i)
			changes := make([]BatchChange, n)
			for j := range changes {
				changes[j] = BatchChange{Event: presence.EventJoin, Member: &ms[i+j]}
			}
			v.batch(int64(i+1), int64(i+n), changes)
			i += n
		}
		if l := v.list(); len(l.Members) != members || l.Members[members-1].UserID != ms[members-1].UserID {
			b.Fatalf("view has %d members", len(l.Members))
		}
	}
}

// TestViewOrder applies random changes to a view, read now and then, and
// to a reference that sorts the room after every change: both must list
// the same members in the same order.
func TestViewOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	v := newView("r", 0, nil)
	var ref []presence.Member
	refSeq, next := map[string]int64{}, int64(0)
	kinds := []string{presence.EventJoin, presence.EventJoin, presence.EventLeave, presence.EventUpdate, presence.EventRemove}
	for step := range 5000 {
		m := presence.Member{UserID: "u" + strconv.Itoa(rng.IntN(300)), Data: []byte(strconv.Itoa(step))}
		kind := kinds[rng.IntN(len(kinds))]
		switch kind {
		case presence.EventJoin:
			m.Online, m.Sessions = true, 1
		case presence.EventUpdate:
			m.Online, m.Sessions = rng.IntN(2) == 0, 1
		default:
			m.LastDisconnected = int64(rng.IntN(50)) // ties too
		}
		if rng.IntN(4) == 0 {
			v.batch(int64(step+1), int64(step+1), []BatchChange{{Event: kind, UserID: m.UserID, Member: &m}})
		} else {
			v.event(int64(step+1), kind, &m)
		}
		i := slices.IndexFunc(ref, func(x presence.Member) bool { return x.UserID == m.UserID })
		if kind == presence.EventRemove {
			if i >= 0 {
				ref = slices.Delete(ref, i, i+1)
			}
			delete(refSeq, m.UserID)
		} else {
			wasOnline := i >= 0 && ref[i].Online
			if i >= 0 {
				ref[i] = m
			} else {
				ref = append(ref, m)
			}
			switch {
			case !m.Online:
				delete(refSeq, m.UserID)
			case kind == presence.EventJoin || !wasOnline:
				next++
				refSeq[m.UserID] = next
			}
		}
		presence.SortMembers(ref, func(id string) int64 { return refSeq[id] })
		if rng.IntN(10) == 0 || step == 4999 {
			got := v.list()
			if got.Version != int64(step+1) || len(got.Members) != len(ref) {
				t.Fatalf("step %d: version %d, %d members, want %d", step, got.Version, len(got.Members), len(ref))
			}
			for j := range ref {
				if got.Members[j].UserID != ref[j].UserID || string(got.Members[j].Data) != string(ref[j].Data) || got.Members[j].Online != ref[j].Online {
					t.Fatalf("step %d: member %d is %+v, want %+v", step, j, got.Members[j], ref[j])
				}
			}
		}
	}
}
