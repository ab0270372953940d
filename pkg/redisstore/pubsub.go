package redisstore

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// SubscriberConfig configures a Subscriber. Zero values mean the defaults.
type SubscriberConfig struct {
	// Connections is the number of pub/sub connections rooms are spread
	// over. Zero means 4.
	Connections int
	// Handler receives every event published on a subscribed room,
	// decoded, in the order Redis delivered them (per room), and the rooms
	// whose subscription was restored after a lost connection (events may
	// have been missed). Nil: set it with SetHandler before Open.
	Handler presence.EventHandler
	Logger  *slog.Logger
}

// Subscriber follows the events channels of the rooms this node's sockets
// use. Rooms are spread over a few fixed connections; go-redis reconnects a
// lost connection and subscribes again, and the Subscriber reports every
// room so restored, so that the node can send its sockets a sync.
type Subscriber struct {
	store   *Store
	cfg     SubscriberConfig
	conns   []*subConn
	cluster *clusterSubscriber // set in Redis Cluster mode instead of conns

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type subConn struct {
	ps    *redis.PubSub
	mu    sync.Mutex
	rooms map[string]presence.RoomRef // channel -> room, while subscribed
	// waiting holds the callers of Subscribe until Redis confirms.
	waiting map[string][]chan struct{}
	up      atomic.Bool
}

// NewSubscriber returns a Subscriber for the rooms of s. Call Open.
func (s *Store) NewSubscriber(cfg SubscriberConfig) *Subscriber {
	if cfg.Connections <= 0 {
		cfg.Connections = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	return &Subscriber{store: s, cfg: cfg}
}

// SetHandler sets the handler of a Subscriber built without one (the
// handler may need the Subscriber first). Call it before Open.
func (sub *Subscriber) SetHandler(h presence.EventHandler) { sub.cfg.Handler = h }

// deliver decodes one message of room and hands it to the handler.
func (sub *Subscriber) deliver(room presence.RoomRef, payload string) {
	sub.store.met.received.Inc()
	if _, ok := userOf(room); ok {
		sub.deliverUser(room.Org, payload)
		return
	}
	ev, err := DecodeEvent(room, []byte(payload))
	if err != nil {
		sub.cfg.Logger.Warn("bad event payload", "err", err)
		return
	}
	if sub.cfg.Handler != nil {
		sub.cfg.Handler.OnEvent(ev)
	}
}

// resubscribed reports a room whose subscription was restored.
func (sub *Subscriber) resubscribed(room presence.RoomRef) {
	sub.store.met.reconnects.Inc()
	if u, ok := userOf(room); ok {
		if h, ok := sub.cfg.Handler.(presence.UserEventHandler); ok {
			h.OnUserResubscribe(room.Org, u)
		}
		return
	}
	if sub.cfg.Handler != nil {
		sub.cfg.Handler.OnResubscribe(room)
	}
}

// Open starts the connections' receive loops.
func (sub *Subscriber) Open(ctx context.Context) error {
	ctx, sub.cancel = context.WithCancel(context.Background())
	if cl, ok := sub.store.rdb.(*redis.ClusterClient); ok && sub.store.cfg.Cluster {
		sub.cluster = &clusterSubscriber{sub: sub, cl: cl, nodes: map[string]*nodeSub{},
			where: map[string]*nodeSub{}, ctx: ctx, wg: &sub.wg}
		return nil
	}
	for i := 0; i < sub.cfg.Connections; i++ {
		c := &subConn{
			ps:      sub.store.subscribe(ctx),
			rooms:   map[string]presence.RoomRef{},
			waiting: map[string][]chan struct{}{},
		}
		sub.conns = append(sub.conns, c)
		sub.wg.Add(1)
		go func() {
			defer sub.wg.Done()
			sub.receive(ctx, c)
		}()
	}
	return nil
}

func (s *Store) subscribe(ctx context.Context) *redis.PubSub {
	if s.cfg.Cluster {
		return s.read.SSubscribe(ctx)
	}
	return s.read.Subscribe(ctx)
}

// Close stops the receive loops and closes the connections. Idempotent.
func (sub *Subscriber) Close() error {
	sub.once.Do(func() {
		if sub.cancel != nil {
			sub.cancel()
		}
		for _, c := range sub.conns {
			c.ps.Close()
		}
		if cs := sub.cluster; cs != nil {
			cs.mu.Lock()
			for _, n := range cs.nodes {
				n.ps.Close()
			}
			cs.mu.Unlock()
		}
		sub.wg.Wait()
	})
	return nil
}

// Connected reports whether every pub/sub connection is up. (In cluster
// mode connections are made per master on demand, and a lost one is
// rebuilt: the subscriber counts as connected.)
func (sub *Subscriber) Connected() bool {
	if sub.cluster != nil {
		return true
	}
	for _, c := range sub.conns {
		if !c.up.Load() {
			return false
		}
	}
	return len(sub.conns) > 0
}

func (sub *Subscriber) conn(channel string) *subConn {
	h := fnv.New32a()
	h.Write([]byte(channel))
	return sub.conns[h.Sum32()%uint32(len(sub.conns))]
}

// Subscribe subscribes to a room's events and returns once Redis has
// confirmed it: every event published after that reaches the handler.
func (sub *Subscriber) Subscribe(ctx context.Context, room presence.RoomRef) error {
	if sub.cluster != nil {
		return sub.cluster.subscribe(ctx, room)
	}
	ch := sub.store.keys.channel(room)
	c := sub.conn(ch)
	done := make(chan struct{})
	c.mu.Lock()
	c.waiting[ch] = append(c.waiting[ch], done)
	c.rooms[ch] = room
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, sub.store.cfg.CallTimeout)
	defer cancel()
	var err error
	if sub.store.cfg.Cluster {
		err = c.ps.SSubscribe(ctx, ch)
	} else {
		err = c.ps.Subscribe(ctx, ch)
	}
	if err == nil {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	c.mu.Lock()
	c.waiting[ch] = removeChan(c.waiting[ch], done)
	if len(c.waiting[ch]) == 0 {
		delete(c.waiting, ch)
	}
	c.mu.Unlock()
	return sub.store.wrap("subscribe", err)
}

// Unsubscribe stops following a room.
func (sub *Subscriber) Unsubscribe(ctx context.Context, room presence.RoomRef) error {
	if sub.cluster != nil {
		return sub.cluster.unsubscribe(ctx, room)
	}
	ch := sub.store.keys.channel(room)
	c := sub.conn(ch)
	c.mu.Lock()
	delete(c.rooms, ch)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, sub.store.cfg.CallTimeout)
	defer cancel()
	var err error
	if sub.store.cfg.Cluster {
		err = c.ps.SUnsubscribe(ctx, ch)
	} else {
		err = c.ps.Unsubscribe(ctx, ch)
	}
	return sub.store.wrap("unsubscribe", err)
}

func removeChan(list []chan struct{}, c chan struct{}) []chan struct{} {
	for i, x := range list {
		if x == c {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// pingIfIdle reports whether err is only a read timeout of an idle
// connection and, if so, whether the connection still answers a PING.
func pingIfIdle(ctx context.Context, ps *redis.PubSub, err error) (idle, alive bool) {
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		return false, false
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return true, ps.Ping(pctx) == nil
}

// receive reads one connection until ctx is done. A confirmation that no
// Subscribe call waits for is a subscription that go-redis restored after a
// reconnect: the room is reported to the handler.
func (sub *Subscriber) receive(ctx context.Context, c *subConn) {
	backoff := 50 * time.Millisecond
	c.ps.Ping(ctx) // the Pong marks the connection up
	for ctx.Err() == nil {
		msg, err := c.ps.ReceiveTimeout(ctx, 2*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if idle, alive := pingIfIdle(ctx, c.ps, err); idle {
				if !alive {
					c.up.Store(false)
				}
				continue
			}
			if c.up.Swap(false) {
				sub.cfg.Logger.Warn("pub/sub connection lost", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		c.up.Store(true)
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			c.mu.Lock()
			room, ok := c.rooms[m.Channel]
			c.mu.Unlock()
			if ok {
				sub.deliver(room, m.Payload)
			}
		case *redis.Subscription:
			if !strings.HasSuffix(m.Kind, "subscribe") || strings.Contains(m.Kind, "unsubscribe") {
				continue
			}
			c.mu.Lock()
			waiters := c.waiting[m.Channel]
			delete(c.waiting, m.Channel)
			room, ok := c.rooms[m.Channel]
			c.mu.Unlock()
			for _, w := range waiters {
				close(w)
			}
			if len(waiters) == 0 && ok {
				sub.resubscribed(room)
			}
		}
	}
}
