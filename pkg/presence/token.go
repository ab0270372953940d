package presence

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
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
}

const (
	tokenRoom     byte = 'r'
	tokenSession  byte = 's'
	macLen             = 16
	maxTokenChars      = 2048
)

var errForged = Errorf(EINVALID, "invalid token")

// NewTokens returns a Tokens that signs with secret (at least 16 bytes).
func NewTokens(secret []byte) (*Tokens, error) {
	if len(secret) < 16 {
		return nil, errors.New("token secret must be at least 16 bytes")
	}
	return &Tokens{secret: append([]byte(nil), secret...)}, nil
}

// RoomToken returns the token that lets its holder list room in the life of
// the room named by epoch.
func (t *Tokens) RoomToken(room RoomRef, epoch string) string {
	return t.sign(tokenRoom, room.Org, room.RoomID, epoch)
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

func (t *Tokens) sign(kind byte, fields ...string) string {
	n := 1 + macLen
	for _, f := range fields {
		n += binary.MaxVarintLen32 + len(f)
	}
	b := make([]byte, 1, n)
	b[0] = kind
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = append(b, t.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
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
	if !hmac.Equal(mac, t.mac(payload)) {
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

func (t *Tokens) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, t.secret)
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}
