package presence_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
)

// signRef is the token format written out plainly (see Tokens): the cached
// room tokens and the pooled HMAC states must give exactly these.
func signRef(secret []byte, kind byte, fields ...string) string {
	b := []byte{kind}
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	h := hmac.New(sha256.New, secret)
	h.Write(b)
	return base64.RawURLEncoding.EncodeToString(append(b, h.Sum(nil)[:16]...))
}

func TestTokensMatchReference(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tk := mustTokens(t, secret)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// More rooms than the cache holds, twice over: evictions too.
			for i := 0; i < 10000; i++ {
				room := presence.RoomRef{Org: "o", RoomID: fmt.Sprint("r", (i*7+g)%9000)}
				epoch := fmt.Sprint(i % 3)
				if got, want := tk.RoomToken(room, epoch), signRef(secret, 'r', room.Org, room.RoomID, epoch); got != want {
					t.Errorf("RoomToken(%v, %s) = %s, want %s", room, epoch, got, want)
					return
				}
				if got, want := tk.SessionToken(room, "s", epoch), signRef(secret, 's', room.Org, room.RoomID, "s", epoch); got != want {
					t.Errorf("SessionToken = %s, want %s", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	// A cached token is still verified as any other.
	room := presence.RoomRef{Org: "o", RoomID: "r1"}
	r, e, err := tk.ParseRoomToken(tk.RoomToken(room, "0"))
	if err != nil || r != room || e != "0" {
		t.Fatalf("ParseRoomToken: %v %v %q", err, r, e)
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { tk.RoomToken(room, "0") }); n != 0 {
		t.Errorf("RoomToken of a cached room: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { tk.SessionToken(room, "s1", "abcdefgh") }); n != 1 {
		t.Errorf("SessionToken: %v allocations, want 1 (the token)", n)
	}
}
