package presence_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash/crc32"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
)

// The corpora in testdata/fuzz hold tokens signed with fuzzSecret.
var (
	fuzzSecret  = []byte("fuzz-token-secret-0123456789abcdef")
	otherSecret = []byte("another-token-secret-0123456789ab")
)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func mustTokens(tb testing.TB, secret []byte) *presence.Tokens {
	tb.Helper()
	t, err := presence.NewTokens(secret)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// signRaw signs an arbitrary payload the way tokens are signed (documented
// in token.go: base64url(payload || HMAC-SHA256(secret, payload)[:16])), so
// that the fuzzer reaches the field parser behind the MAC check.
func signRaw(secret, payload []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write(payload)
	b := append(append([]byte(nil), payload...), h.Sum(nil)[:16]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sameToken reports whether a token the server accepted is exactly the one
// it re-signs: each token has one spelling.
func sameToken(got, resigned string) bool { return got == resigned }

// mutations calls f with tok changed at a position (to two other base64url
// characters and to one outside the alphabet): every position of a short
// token; for a longer one the first and last 16 and 16 more picked by seed,
// so that one execution stays cheap.
func mutations(tok string, seed int, f func(string)) {
	mutate := func(i int) {
		k := strings.IndexByte(b64Alphabet, tok[i])
		for _, c := range []byte{b64Alphabet[(k+1+64)%64], b64Alphabet[(k+33+64)%64], '.'} {
			if c != tok[i] {
				f(tok[:i] + string(c) + tok[i+1:])
			}
		}
	}
	if len(tok) <= 96 {
		for i := range len(tok) {
			mutate(i)
		}
		return
	}
	for i := range 16 {
		mutate(i)
		mutate(len(tok) - 1 - i)
		mutate(16 + (seed+i*7919)%(len(tok)-32))
	}
}

// splitFields cuts s into n fields at '|' (missing ones are empty).
func splitFields(s string, n int) []string {
	f := strings.SplitN(s, "|", n)
	for len(f) < n {
		f = append(f, "")
	}
	return f
}

// FuzzParseRoomToken: parsing never panics; a token that parses re-signs to
// itself and is refused as a session token and under another secret; a
// token signed with another secret never parses; a token of any fields
// round-trips; changing any character of a valid token makes it fail or
// parse to the very same fields.
func FuzzParseRoomToken(f *testing.F) {
	tk, other := mustTokens(f, fuzzSecret), mustTokens(f, otherSecret)
	f.Add(tk.RoomToken(presence.RoomRef{Org: "default", RoomID: "lobby"}, "0"))
	f.Add("default|lobby|0")
	f.Add("r\x07default\x05lobby\x010")
	f.Fuzz(func(t *testing.T, s string) {
		// 1. s as a token.
		if room, epoch, err := tk.ParseRoomToken(s); err == nil {
			if re := tk.RoomToken(room, epoch); !sameToken(s, re) {
				t.Fatalf("token %q parses to %+v %q but re-signs to %q", s, room, epoch, re)
			}
			if _, _, _, err := tk.ParseSessionToken(s); err == nil {
				t.Fatalf("room token %q parses as a session token", s)
			}
			if _, _, err := other.ParseRoomToken(s); err == nil {
				t.Fatalf("token %q parses under two secrets", s)
			}
		} else if code := presence.ErrorCode(err); code != presence.EINVALID {
			t.Fatalf("token %q: error code %q, want %q", s, code, presence.EINVALID)
		}

		// 2. s as a payload, signed with our secret and with another one.
		if _, _, err := other.ParseRoomToken(signRaw(fuzzSecret, []byte(s))); err == nil {
			t.Fatalf("payload %q signed with another secret parses", s)
		}
		if room, epoch, err := tk.ParseRoomToken(signRaw(fuzzSecret, []byte(s))); err == nil {
			// Non-minimal length varints give another payload with the
			// same fields (only the secret's holder can make those), so
			// compare fields, not bytes.
			r2, e2, err := tk.ParseRoomToken(tk.RoomToken(room, epoch))
			if err != nil || r2 != room || e2 != epoch {
				t.Fatalf("payload %q: %+v %q re-signs to %+v %q (%v)", s, room, epoch, r2, e2, err)
			}
		}

		// 3. s as the fields of a token.
		fs := splitFields(s, 3)
		want := presence.RoomRef{Org: fs[0], RoomID: fs[1]}
		tok := tk.RoomToken(want, fs[2])
		room, epoch, err := tk.ParseRoomToken(tok)
		switch {
		case len(tok) > 2048:
			if err == nil {
				t.Fatalf("a %d-character token parsed", len(tok))
			}
			return
		case err != nil || room != want || epoch != fs[2]:
			t.Fatalf("fields %q: round trip gave %+v %q %v", fs, room, epoch, err)
		}
		if _, _, err := other.ParseRoomToken(tok); err == nil {
			t.Fatalf("token of %q parses under another secret", fs)
		}
		mutations(tok, int(crc32.ChecksumIEEE([]byte(s))&0xffff), func(m string) {
			if r, e, err := tk.ParseRoomToken(m); err == nil && (r != want || e != fs[2]) {
				t.Fatalf("mutated token %q (of %q) parses to %+v %q", m, tok, r, e)
			}
		})
	})
}

// FuzzParseSessionToken: as FuzzParseRoomToken, for session tokens.
func FuzzParseSessionToken(f *testing.F) {
	tk, other := mustTokens(f, fuzzSecret), mustTokens(f, otherSecret)
	f.Add(tk.SessionToken(presence.RoomRef{Org: "default", RoomID: "lobby"}, "tab-1", "ocV4hLrnC028"))
	f.Add("default|lobby|tab-1|ocV4hLrnC028")
	f.Add("s\x07default\x05lobby\x05tab-1\x0cocV4hLrnC028")
	// Every token the service can issue (ids at their longest, 12-character
	// epochs) is short enough to parse.
	bigRoom := presence.RoomRef{Org: strings.Repeat("o", 128), RoomID: strings.Repeat("r", 256)}
	if _, _, _, err := tk.ParseSessionToken(tk.SessionToken(bigRoom, strings.Repeat("s", 256), strings.Repeat("e", 12))); err != nil {
		f.Fatalf("the longest valid session token does not parse: %v", err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if room, sid, epoch, err := tk.ParseSessionToken(s); err == nil {
			if re := tk.SessionToken(room, sid, epoch); !sameToken(s, re) {
				t.Fatalf("token %q parses to %+v %q %q but re-signs to %q", s, room, sid, epoch, re)
			}
			if _, _, err := tk.ParseRoomToken(s); err == nil {
				t.Fatalf("session token %q parses as a room token", s)
			}
			if _, _, _, err := other.ParseSessionToken(s); err == nil {
				t.Fatalf("token %q parses under two secrets", s)
			}
		} else if code := presence.ErrorCode(err); code != presence.EINVALID {
			t.Fatalf("token %q: error code %q, want %q", s, code, presence.EINVALID)
		}

		if _, _, _, err := other.ParseSessionToken(signRaw(fuzzSecret, []byte(s))); err == nil {
			t.Fatalf("payload %q signed with another secret parses", s)
		}
		if room, sid, epoch, err := tk.ParseSessionToken(signRaw(fuzzSecret, []byte(s))); err == nil {
			r2, s2, e2, err := tk.ParseSessionToken(tk.SessionToken(room, sid, epoch))
			if err != nil || r2 != room || s2 != sid || e2 != epoch {
				t.Fatalf("payload %q: %+v %q %q re-signs to %+v %q %q (%v)", s, room, sid, epoch, r2, s2, e2, err)
			}
		}

		fs := splitFields(s, 4)
		want := presence.RoomRef{Org: fs[0], RoomID: fs[1]}
		tok := tk.SessionToken(want, fs[2], fs[3])
		room, sid, epoch, err := tk.ParseSessionToken(tok)
		switch {
		case len(tok) > 2048:
			if err == nil {
				t.Fatalf("a %d-character token parsed", len(tok))
			}
			return
		case err != nil || room != want || sid != fs[2] || epoch != fs[3]:
			t.Fatalf("fields %q: round trip gave %+v %q %q %v", fs, room, sid, epoch, err)
		}
		if _, _, _, err := other.ParseSessionToken(tok); err == nil {
			t.Fatalf("token of %q parses under another secret", fs)
		}
		mutations(tok, int(crc32.ChecksumIEEE([]byte(s))&0xffff), func(m string) {
			if r, sd, e, err := tk.ParseSessionToken(m); err == nil && (r != want || sd != fs[2] || e != fs[3]) {
				t.Fatalf("mutated token %q (of %q) parses to %+v %q %q", m, tok, r, sd, e)
			}
		})
	})
}

// idOK is the contract's rule for room, user and session ids, written
// independently of validate.go: 1..max bytes of UTF-8, no control
// characters (Unicode Cc, and the line/paragraph separators), no braces
// where they are forbidden.
func idOK(s string, max int, noBraces bool) bool {
	if len(s) == 0 || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return false
		}
		// Look-alike ids: bidi controls and invisible characters.
		if unicode.Is(unicode.Bidi_Control, r) || strings.ContainsRune("\u200b\u2060\ufeff\u00ad\u180e", r) {
			return false
		}
	}
	return !noBraces || !strings.ContainsAny(s, "{}")
}

func orgOK(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-", rune(c)) {
			return false
		}
	}
	return true
}

// FuzzValidateIDs: the validators never panic, accept exactly the ids of
// the contract, refuse with EINVALID, and accepted orgs and room ids keep
// the Redis hash tag "<org>::<roomId>" unambiguous.
func FuzzValidateIDs(f *testing.F) {
	f.Add("lobby")
	f.Fuzz(func(t *testing.T, s string) {
		check := func(name string, err error, want bool) {
			t.Helper()
			if (err == nil) != want {
				t.Fatalf("%s(%q) = %v, want ok=%v", name, s, err, want)
			}
			if err != nil && presence.ErrorCode(err) != presence.EINVALID {
				t.Fatalf("%s(%q): code %q", name, s, presence.ErrorCode(err))
			}
		}
		check("ValidateRoomID", presence.ValidateRoomID(s), idOK(s, presence.MaxRoomIDBytes, true))
		check("ValidateUserID", presence.ValidateUserID(s), idOK(s, presence.MaxUserIDBytes, false))
		check("ValidateSessionID", presence.ValidateSessionID(s), idOK(s, presence.MaxSessionIDBytes, true))
		check("ValidateOrg", presence.ValidateOrg(s), orgOK(s))

		if presence.ValidateOrg(s) == nil {
			if strings.ContainsAny(s, ":{}") {
				t.Fatalf("org %q may break the key layout", s)
			}
			ref := presence.RoomRef{Org: s, RoomID: "a::b"}
			if got, ok := redisstore.ParseTag(redisstore.Tag(ref)); !ok || got != ref {
				t.Fatalf("tag of %+v parses to %+v", ref, got)
			}
		}
		if presence.ValidateRoomID(s) == nil {
			for _, org := range []string{"a", "default"} {
				ref := presence.RoomRef{Org: org, RoomID: s}
				if got, ok := redisstore.ParseTag(redisstore.Tag(ref)); !ok || got != ref {
					t.Fatalf("tag of %+v parses to %+v", ref, got)
				}
			}
		}
	})
}

// TestOneSpellingPerRoomToken: regression for what FuzzParseSessionToken
// found: a token followed by "\r", or with other unused trailing bits,
// parsed as the same token.
func TestOneSpellingPerRoomToken(t *testing.T) {
	tk, _ := presence.NewTokens([]byte("0123456789abcdef0123456789abcdef"))
	for _, tok := range []string{tk.RoomToken(presence.RoomRef{Org: "a", RoomID: "b"}, "0"), tk.SessionToken(presence.RoomRef{Org: "a", RoomID: "b"}, "s", "e")} {
		for _, alt := range []string{tok + "\r", tok + "\n", "\r" + tok, tok[:5] + "\n" + tok[5:]} {
			_, _, err1 := tk.ParseRoomToken(alt)
			_, _, _, err2 := tk.ParseSessionToken(alt)
			if err1 == nil || err2 == nil {
				t.Errorf("accepted %q", alt)
			}
		}
	}
}

// FuzzParseCursor: a cursor parses only when it is ours, of the room and
// query asked, and then it signs again to the same place; anything else is
// EINVALID. Room and session tokens are never cursors.
func FuzzParseCursor(f *testing.F) {
	tk, other := mustTokens(f, fuzzSecret), mustTokens(f, otherSecret)
	room := presence.RoomRef{Org: "default", RoomID: "lobby"}
	f.Add(tk.Cursor(room, "0", false, presence.ListPosition{Score: 8998204548287129, UserID: "ada"}), false)
	f.Add(tk.Cursor(room, "0", true, presence.ListPosition{Score: 1025, UserID: "grace"}), true)
	f.Add(tk.RoomToken(room, "0"), false)
	f.Add("p\x07default\x05lobby\x010\x010\x041025\x03ada", false)
	f.Fuzz(func(t *testing.T, s string, online bool) {
		epoch, pos, err := tk.ParseCursor(s, room, online)
		if err != nil {
			if code := presence.ErrorCode(err); code != presence.EINVALID {
				t.Fatalf("cursor %q: error code %q, want %q", s, code, presence.EINVALID)
			}
		} else {
			if re := tk.Cursor(room, epoch, online, pos); !sameToken(s, re) {
				t.Fatalf("cursor %q parses to %q %+v but re-signs to %q", s, epoch, pos, re)
			}
			if _, _, err := tk.ParseCursor(s, room, !online); err == nil {
				t.Fatalf("cursor %q parses for onlineOnly %v and %v", s, online, !online)
			}
			if _, _, err := tk.ParseCursor(s, presence.RoomRef{Org: "default", RoomID: "lobby2"}, online); err == nil {
				t.Fatalf("cursor %q parses for another room", s)
			}
			if _, _, err := other.ParseCursor(s, room, online); err == nil {
				t.Fatalf("cursor %q parses under two secrets", s)
			}
			if _, _, err := tk.ParseRoomToken(s); err == nil {
				t.Fatalf("cursor %q parses as a room token", s)
			}
		}
		// s as a payload signed with another secret never parses.
		if _, _, err := tk.ParseCursor(signRaw(otherSecret, []byte(s)), room, online); err == nil {
			t.Fatalf("payload %q signed with another secret parses", s)
		}
	})
}
