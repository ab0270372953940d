package presence_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
)

func on(id string) presence.Member { return presence.Member{UserID: id, Online: true, Sessions: 1} }

func off(id string, last int64) presence.Member {
	return presence.Member{UserID: id, LastDisconnected: last}
}

func TestCompareMembers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b       presence.Member
		seqA, seqB int64
		want       int
	}{
		{"online before offline", on("z"), off("a", 9), 5, 0, -1},
		{"offline after online", off("a", 9), on("z"), 0, 5, 1},
		{"online by online sequence", on("z"), on("a"), 1, 2, -1},
		{"online, later sequence last", on("a"), on("z"), 7, 2, 1},
		{"online, same sequence: by userId", on("b"), on("a"), 3, 3, 1},
		{"offline, most recent first", off("z", 200), off("a", 100), 0, 0, -1},
		{"offline, older last", off("a", 100), off("z", 200), 0, 0, 1},
		{"offline, same time: by userId", off("a", 100), off("b", 100), 0, 0, -1},
		{"offline, sequences not read", off("a", 100), off("b", 100), 9, 1, -1},
		{"never disconnected last", off("a", 0), off("b", 1), 0, 0, 1},
		{"userId by bytes", off("\uffff", 1), off("\U0001F600", 1), 0, 0, -1},
		{"same member", on("a"), on("a"), 4, 4, 0},
	} {
		if got := presence.CompareMembers(tc.a, tc.b, tc.seqA, tc.seqB); got != tc.want {
			t.Errorf("%s: CompareMembers(%s, %s) = %d, want %d", tc.name, tc.a.UserID, tc.b.UserID, got, tc.want)
		}
	}
}

func ids(ms []presence.Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.UserID
	}
	return strings.Join(s, " ")
}

func TestSortMembers(t *testing.T) {
	ms := []presence.Member{off("old", 10), on("late"), off("tie-b", 50), on("early"), off("recent", 90), off("tie-a", 50), on("mid")}
	seq := map[string]int64{"early": 1, "mid": 2, "late": 3}
	var asked []string
	presence.SortMembers(ms, func(id string) int64 {
		asked = append(asked, id)
		return seq[id]
	})
	if got, want := ids(ms), "early mid late recent tie-a tie-b old"; got != want {
		t.Fatalf("sorted: %s, want %s", got, want)
	}
	for _, id := range asked {
		if _, ok := seq[id]; !ok {
			t.Fatalf("onlineSeq asked for offline member %q", id)
		}
	}
}

// TestOrderScoreIsTheRoomOrder: sorting by order score, ties by userId (as
// the store's sorted set does), gives the order of SortMembers.
func TestOrderScoreIsTheRoomOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		n := 1 + r.IntN(12)
		ms := make([]presence.Member, n)
		seq := map[string]int64{}
		joins := r.Perm(n) // a distinct join sequence per member
		for i := range ms {
			id := fmt.Sprintf("u%d", r.IntN(1000)*100+i)
			if r.IntN(2) == 0 {
				ms[i] = on(id)
				// As lua/lib.lua scores: join sequence × 1024 + sessions.
				seq[id] = int64(joins[i]+1)*1024 + int64(1+r.IntN(1023))
			} else {
				ms[i] = off(id, 1_700_000_000_000+int64(r.IntN(4))) // frequent ties
			}
		}
		byScore := slices.Clone(ms)
		slices.SortFunc(byScore, func(a, b presence.Member) int {
			return cmp.Or(cmp.Compare(presence.OrderScore(a, seq[a.UserID]), presence.OrderScore(b, seq[b.UserID])),
				strings.Compare(a.UserID, b.UserID))
		})
		presence.SortMembers(ms, func(id string) int64 { return seq[id] })
		if ids(ms) != ids(byScore) {
			t.Fatalf("round %d: SortMembers %s, by score %s", round, ids(ms), ids(byScore))
		}
	}
}

func TestMemberFromScore(t *testing.T) {
	for _, tc := range []struct {
		score int64
		want  presence.Member
	}{
		{1*1024 + 1, presence.Member{UserID: "u", Online: true}},
		{presence.OrderScoreOnlineMax - 1, presence.Member{UserID: "u", Online: true}},
		{presence.OrderScoreOffline - 1_700_000_000_123, presence.Member{UserID: "u", LastDisconnected: 1_700_000_000_123}},
		{presence.OrderScoreOffline, presence.Member{UserID: "u"}},
	} {
		if got := presence.MemberFromScore("u", tc.score); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MemberFromScore(%d) = %+v, want %+v", tc.score, got, tc.want)
		}
	}
	// The inverse of OrderScore.
	for _, m := range []presence.Member{on("a"), off("b", 1_700_000_000_000), off("c", 0)} {
		m.Sessions = 0
		if got := presence.MemberFromScore(m.UserID, presence.OrderScore(m, 42)); !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %+v: %+v", m, got)
		}
	}
	if s := presence.OrderScore(off("x", 8_000_000_000_000_000), 0); s < presence.OrderScoreOnlineMax {
		t.Errorf("an offline score below OrderScoreOnlineMax: %d", s)
	}
}

func ExampleSortMembers() {
	ms := []presence.Member{
		{UserID: "grace", LastDisconnected: 100},
		{UserID: "bob", Online: true},
		{UserID: "ada", Online: true},
		{UserID: "cy", LastDisconnected: 200},
	}
	cameOnline := map[string]int64{"bob": 1, "ada": 2} // bob came online first
	presence.SortMembers(ms, func(userID string) int64 { return cameOnline[userID] })
	for _, m := range ms {
		fmt.Println(m.UserID, m.Online)
	}
	// Output:
	// bob true
	// ada true
	// cy false
	// grace false
}
