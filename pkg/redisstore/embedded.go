package redisstore

import (
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Embedded is the in-process Redis-compatible server (miniredis) that a node
// runs when no Redis is configured. The store talks to it over loopback like
// to any Redis, so the same Lua scripts apply the same rules.
type Embedded struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// StartEmbedded starts the embedded server on addr ("" means a free
// loopback port). miniredis only ages keys when told to, so a loop advances
// its clock with the wall clock; that makes the key TTLs work.
func StartEmbedded(addr string) (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := m.StartAddr(addr); err != nil {
		return nil, err
	}
	e := &Embedded{m: m, stop: make(chan struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		last := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return e, nil
}

// Addr is the address the embedded server listens on.
func (e *Embedded) Addr() string { return e.m.Addr() }

// Close stops the server. Idempotent.
func (e *Embedded) Close() {
	e.once.Do(func() {
		close(e.stop)
		e.wg.Wait()
		e.m.Close()
	})
}
