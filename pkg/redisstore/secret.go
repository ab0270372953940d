package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// EnsureSecret returns the secret that signs room and session tokens. A
// configured secret is used as is. Otherwise the first node to start
// generates one and stores it in Redis (SET NX), and every node uses that
// one. The store remembers it and writes it back if Redis loses it (a
// restart without persistence), so tokens that clients hold stay valid.
func (s *Store) EnsureSecret(ctx context.Context, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	if err := s.rdb.SetNX(ctx, s.keys.Secret(), hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	v, err := s.rdb.Get(ctx, s.keys.Secret()).Result()
	if err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	s.secretMu.Lock()
	s.secret = v
	s.secretMu.Unlock()
	return []byte(v), nil
}

func (s *Store) restoreSecret(ctx context.Context) {
	s.secretMu.Lock()
	v := s.secret
	s.secretMu.Unlock()
	if v == "" {
		return
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	s.rdb.SetNX(ctx, s.keys.Secret(), v, 0)
}

// LostData reports whether Redis lost its data since the previous call: the
// incarnation key, a random value the first node writes, is gone or has
// another value. Keep-alives use it to tell a session that was ended from a
// session that Redis forgot, which the node puts back.
func (s *Store) LostData(ctx context.Context) (bool, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var b [16]byte
	rand.Read(b[:])
	key := s.keys.Incarnation()
	if err := s.rdb.SetNX(ctx, key, hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return false, s.wrap("incarnation", err)
	}
	cur, err := s.rdb.Get(ctx, key).Result()
	if err != nil {
		return false, s.wrap("incarnation", err)
	}
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	lost := s.incarnation != "" && s.incarnation != cur
	s.incarnation = cur
	return lost, nil
}
