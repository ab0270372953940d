package presence

import "testing"

// TestRoomTokensAgeOut: the room token cache empties itself when left
// alone (two ages), and a token in use moves back to the current
// generation.
func TestRoomTokensAgeOut(t *testing.T) {
	tk, err := NewTokens([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	hot, cold := RoomRef{Org: "o", RoomID: "hot"}, RoomRef{Org: "o", RoomID: "cold"}
	want := tk.RoomToken(hot, "e1")
	tk.RoomToken(cold, "e1")
	c := &tk.rooms
	c.age()
	if got := tk.RoomToken(hot, "e1"); got != want {
		t.Fatalf("cached token %q, want %q", got, want)
	}
	c.mu.Lock()
	_, hotCur := c.cur[roomTokenKey{"o", "hot", "e1"}]
	_, coldCur := c.cur[roomTokenKey{"o", "cold", "e1"}]
	c.mu.Unlock()
	if !hotCur || coldCur {
		t.Fatalf("after one age: hot in current %v (want true), cold in current %v (want false)", hotCur, coldCur)
	}
	c.age()
	c.age()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur)+len(c.old) != 0 || c.aging {
		t.Fatalf("after three ages: %d + %d entries, aging %v; want an empty cache at rest", len(c.cur), len(c.old), c.aging)
	}
}
