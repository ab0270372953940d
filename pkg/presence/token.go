package presence

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tokens signs and verifies room and session tokens.
//
// A token is base64url(payload || mac) where payload is a kind byte followed
// by length-prefixed fields and mac is the first 16 bytes of
// HMAC-SHA256(secret, payload). Tokens are self-contained: any node holding
// the shared secret verifies them without a round trip to the store, and they
// are bound to their org and room.
type Tokens struct {
	secret []byte
	macs   sync.Pool // *signer: HMAC states are reset, not made anew
	rooms  roomTokens
}

// signer is a pooled HMAC-SHA256 state with its buffers.
type signer struct {
	h       hash.Hash
	payload []byte
	out     []byte
	sum     [sha256.Size]byte
}

// roomTokens caches room tokens: every heartbeat of a room answers with the
// same one. Two generations of at most roomTokenCache entries each; the
// current one becomes the old one when it is full, or after roomTokenAge,
// so that a token unused for two periods is dropped and a node left alone
// ends with an empty cache (a burst of rooms would otherwise keep up to
// 8,192 tokens, about 1.6 MB, for good).
type roomTokens struct {
	mu       sync.Mutex
	cur, old map[roomTokenKey]string
	aging    bool // age is scheduled
}

type roomTokenKey struct{ org, room, epoch string }

const (
	roomTokenCache = 4096
	roomTokenAge   = time.Minute
)

const (
	tokenRoom     byte = 'r'
	tokenSession  byte = 's'
	tokenCursor   byte = 'p'
	macLen             = 16
	maxTokenChars      = 2048
)

var errForged = Errorf(EINVALID, "invalid token")

// NewTokens returns a Tokens that signs with secret (at least 16 bytes).
func NewTokens(secret []byte) (*Tokens, error) {
	if len(secret) < 16 {
		return nil, errors.New("token secret must be at least 16 bytes")
	}
	t := &Tokens{secret: append([]byte(nil), secret...)}
	t.macs.New = func() any { return &signer{h: hmac.New(sha256.New, t.secret)} }
	return t, nil
}

// RoomToken returns the token that lets its holder list room in the life of
// the room named by epoch.
func (t *Tokens) RoomToken(room RoomRef, epoch string) string {
	k := roomTokenKey{room.Org, room.RoomID, epoch}
	c := &t.rooms
	c.mu.Lock()
	tok, ok := c.cur[k]
	if !ok {
		if tok, ok = c.old[k]; ok {
			c.put(k, tok)
		}
	}
	c.mu.Unlock()
	if ok {
		return tok
	}
	tok = t.sign(tokenRoom, room.Org, room.RoomID, epoch)
	c.mu.Lock()
	c.put(k, tok)
	c.mu.Unlock()
	return tok
}

// put adds an entry (c.mu held). The key's strings are copied: they may be
// parts of a request's body, which the cache must not keep.
func (c *roomTokens) put(k roomTokenKey, tok string) {
	if len(c.cur) >= roomTokenCache {
		c.old, c.cur = c.cur, nil
	}
	if c.cur == nil {
		c.cur = map[roomTokenKey]string{}
	}
	c.cur[roomTokenKey{strings.Clone(k.org), strings.Clone(k.room), strings.Clone(k.epoch)}] = tok
	if !c.aging {
		c.aging = true
		time.AfterFunc(roomTokenAge, c.age)
	}
}

// age makes the current generation the old one, dropping the old one, and
// runs again a period later while anything is left.
func (c *roomTokens) age() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.old, c.cur = c.cur, nil
	if len(c.old) == 0 {
		c.aging = false
		return
	}
	time.AfterFunc(roomTokenAge, c.age)
}

// ParseRoomToken verifies a room token and returns its room and epoch.
func (t *Tokens) ParseRoomToken(s string) (RoomRef, string, error) {
	f, err := t.parse(tokenRoom, s, 3)
	if err != nil {
		return RoomRef{}, "", err
	}
	return RoomRef{Org: f[0], RoomID: f[1]}, f[2], nil
}

// SessionToken returns the token that lets its holder end one session.
func (t *Tokens) SessionToken(room RoomRef, sessionID, epoch string) string {
	return t.sign(tokenSession, room.Org, room.RoomID, sessionID, epoch)
}

// ParseSessionToken verifies a session token.
func (t *Tokens) ParseSessionToken(s string) (room RoomRef, sessionID, epoch string, err error) {
	f, err := t.parse(tokenSession, s, 4)
	if err != nil {
		return RoomRef{}, "", "", err
	}
	return RoomRef{Org: f[0], RoomID: f[1]}, f[2], f[3], nil
}

// Cursor returns the cursor of the page after position pos of the list of
// room in the life named by epoch, with members online only or not. It is
// signed like the tokens and bound to all of these: a cursor of another
// room, life or query is refused (ParseCursor).
func (t *Tokens) Cursor(room RoomRef, epoch string, onlineOnly bool, pos ListPosition) string {
	online := "0"
	if onlineOnly {
		online = "1"
	}
	return t.sign(tokenCursor, room.Org, room.RoomID, epoch, online, strconv.FormatInt(pos.Score, 10), pos.UserID)
}

var errCursor = Errorf(EINVALID, "invalid cursor")

// ParseCursor verifies a cursor of a list of room with members online only
// or not, and returns the room epoch and the position it holds. A malformed
// or forged cursor, or one of another room or query, is EINVALID.
func (t *Tokens) ParseCursor(s string, room RoomRef, onlineOnly bool) (epoch string, pos ListPosition, err error) {
	f, err := t.parse(tokenCursor, s, 6)
	if err != nil {
		return "", ListPosition{}, errCursor
	}
	if f[0] != room.Org || f[1] != room.RoomID || f[3] != map[bool]string{false: "0", true: "1"}[onlineOnly] {
		return "", ListPosition{}, Errorf(EINVALID, "the cursor is of another list")
	}
	sc, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil || sc < 0 || strconv.FormatInt(sc, 10) != f[4] {
		return "", ListPosition{}, errCursor
	}
	return f[2], ListPosition{Score: sc, UserID: f[5]}, nil
}

func (t *Tokens) sign(kind byte, fields ...string) string {
	m := t.macs.Get().(*signer)
	b := append(m.payload[:0], kind)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = append(b, m.mac(b)...)
	m.payload = b
	m.out = slices.Grow(m.out[:0], base64.RawURLEncoding.EncodedLen(len(b)))[:base64.RawURLEncoding.EncodedLen(len(b))]
	base64.RawURLEncoding.Encode(m.out, b)
	tok := string(m.out)
	t.macs.Put(m)
	return tok
}

func (t *Tokens) parse(kind byte, s string, nfields int) ([]string, error) {
	if s == "" {
		return nil, Errorf(EINVALID, "token is required")
	}
	if len(s) > maxTokenChars {
		return nil, errForged
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	// One spelling per token: the decoder skips \r and \n and ignores the
	// last character's unused bits, so the input must be the canonical one.
	if err != nil || len(b) < 1+macLen || b[0] != kind || base64.RawURLEncoding.EncodeToString(b) != s {
		return nil, errForged
	}
	payload, mac := b[:len(b)-macLen], b[len(b)-macLen:]
	m := t.macs.Get().(*signer)
	ok := hmac.Equal(mac, m.mac(payload))
	t.macs.Put(m)
	if !ok {
		return nil, errForged
	}
	fields := make([]string, 0, nfields)
	rest := payload[1:]
	for len(rest) > 0 {
		l, k := binary.Uvarint(rest)
		if k <= 0 || l > uint64(len(rest)-k) {
			return nil, errForged
		}
		fields = append(fields, string(rest[k:k+int(l)]))
		rest = rest[k+int(l):]
	}
	if len(fields) != nfields {
		return nil, errForged
	}
	return fields, nil
}

// mac returns the MAC of payload, in m's buffer (valid until m's next use).
func (m *signer) mac(payload []byte) []byte {
	m.h.Reset()
	m.h.Write(payload)
	return m.h.Sum(m.sum[:0])[:macLen]
}
