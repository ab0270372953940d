package redisstore

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// In Redis Cluster, events are sharded channels: a channel can only be
// subscribed on the master that owns its slot, and go-redis binds one PubSub
// to one node, and after a reconnect resubscribes all of a PubSub's channels
// in one SSUBSCRIBE (refused when they span slots). So the cluster
// subscriber keeps one PubSub per master, subscribes channel by channel, and
// when a connection fails or Redis moves a slot away (it then sends
// sunsubscribe), it closes that PubSub and subscribes its channels again
// where the cluster now says they live, reporting each room for a sync.

type nodeSub struct {
	addr   string
	ps     *redis.PubSub
	mu     sync.Mutex
	rooms  map[string]presence.RoomRef // channel -> room
	wait   map[string][]chan struct{}
	leave  map[string]bool // unsubscribes we asked for
	cancel context.CancelFunc
}

// clusterSubscriber is the part of Subscriber used in cluster mode.
type clusterSubscriber struct {
	sub   *Subscriber
	cl    *redis.ClusterClient
	mu    sync.Mutex // guards nodes and where; held while (un)subscribing
	nodes map[string]*nodeSub
	where map[string]*nodeSub // channel -> its node's subscription
	ctx   context.Context
	wg    *sync.WaitGroup
}

func (cs *clusterSubscriber) nodeOf(ctx context.Context, channel string) (string, error) {
	c, err := cs.cl.MasterForKey(ctx, channel)
	if err != nil {
		return "", err
	}
	return c.Options().Addr, nil
}

func (cs *clusterSubscriber) subscribe(ctx context.Context, room presence.RoomRef) error {
	ch := cs.sub.store.keys.channel(room)
	ctx, cancel := context.WithTimeout(ctx, cs.sub.store.cfg.CallTimeout)
	defer cancel()
	done := make(chan struct{})
	cs.mu.Lock()
	n, err := cs.add(ctx, ch, room, done)
	cs.mu.Unlock()
	if err == nil {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if n != nil {
		n.mu.Lock()
		n.wait[ch] = removeChan(n.wait[ch], done)
		n.mu.Unlock()
	}
	return cs.sub.store.wrap("subscribe", err)
}

// add subscribes ch on its master (cs.mu held); done is closed when Redis
// confirms.
func (cs *clusterSubscriber) add(ctx context.Context, ch string, room presence.RoomRef, done chan struct{}) (*nodeSub, error) {
	addr, err := cs.nodeOf(ctx, ch)
	if err != nil {
		return nil, err
	}
	n := cs.nodes[addr]
	if n == nil {
		n = &nodeSub{addr: addr, rooms: map[string]presence.RoomRef{ch: room},
			wait: map[string][]chan struct{}{ch: {done}}, leave: map[string]bool{}}
		n.ps = cs.cl.SSubscribe(ctx, ch) // binds the PubSub to ch's master
		cs.nodes[addr] = n
		cs.where[ch] = n
		rctx, cancel := context.WithCancel(cs.ctx)
		n.cancel = cancel
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			cs.receive(rctx, n)
		}()
		return n, nil
	}
	n.mu.Lock()
	n.rooms[ch] = room
	n.wait[ch] = append(n.wait[ch], done)
	delete(n.leave, ch)
	n.mu.Unlock()
	cs.where[ch] = n
	return n, n.ps.SSubscribe(ctx, ch)
}

func (cs *clusterSubscriber) unsubscribe(ctx context.Context, room presence.RoomRef) error {
	ch := cs.sub.store.keys.channel(room)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	n := cs.where[ch]
	if n == nil {
		return nil
	}
	delete(cs.where, ch)
	n.mu.Lock()
	delete(n.rooms, ch)
	n.leave[ch] = true
	empty := len(n.rooms) == 0
	n.mu.Unlock()
	if empty {
		cs.drop(n)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cs.sub.store.cfg.CallTimeout)
	defer cancel()
	return cs.sub.store.wrap("unsubscribe", n.ps.SUnsubscribe(ctx, ch))
}

// drop closes a node's PubSub (cs.mu held).
func (cs *clusterSubscriber) drop(n *nodeSub) {
	if cs.nodes[n.addr] == n {
		delete(cs.nodes, n.addr)
	}
	n.cancel()
	n.ps.Close()
}

// rehome subscribes channels again where the cluster now says they live;
// once Redis confirms each one, its room is reported for a sync (events
// published meanwhile were missed). n's PubSub is closed first when its
// connection failed.
func (cs *clusterSubscriber) rehome(n *nodeSub, channels map[string]presence.RoomRef, closeNode bool) {
	backoff := 100 * time.Millisecond
	for len(channels) > 0 && cs.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(cs.ctx, 2*time.Second)
		cs.cl.ReloadState(ctx)
		cs.mu.Lock()
		if closeNode {
			cs.drop(n)
			closeNode = false
		}
		for ch, room := range channels {
			if cs.where[ch] != n {
				delete(channels, ch) // unsubscribed meanwhile
				continue
			}
			done := make(chan struct{})
			if _, err := cs.add(ctx, ch, room, done); err != nil {
				continue
			}
			delete(channels, ch)
			go func() {
				select {
				case <-done:
					cs.sub.resubscribed(room)
				case <-cs.ctx.Done():
				}
			}()
		}
		cs.mu.Unlock()
		cancel()
		if len(channels) > 0 {
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// receive reads one node's PubSub until its context ends.
func (cs *clusterSubscriber) receive(ctx context.Context, n *nodeSub) {
	for ctx.Err() == nil {
		msg, err := n.ps.ReceiveTimeout(ctx, 2*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if idle, alive := pingIfIdle(ctx, n.ps, err); idle && alive {
				continue
			}
			// The connection failed (or go-redis's own resubscribe was
			// refused): start this node over where the channels live now.
			if strings.HasPrefix(err.Error(), "MOVED") {
				// A slot moved; go-redis learns the new owner shortly.
				cs.sub.cfg.Logger.Debug("sharded pub/sub: slot moved", "redis_node", n.addr, "err", err)
			} else {
				cs.sub.cfg.Logger.Warn("sharded pub/sub connection lost", "redis_node", n.addr, "err", err)
			}
			n.mu.Lock()
			channels := make(map[string]presence.RoomRef, len(n.rooms))
			for ch, room := range n.rooms {
				channels[ch] = room
			}
			n.mu.Unlock()
			go cs.rehome(n, channels, true)
			return
		}
		switch m := msg.(type) {
		case *redis.Message:
			n.mu.Lock()
			room, ok := n.rooms[m.Channel]
			n.mu.Unlock()
			if ok {
				cs.sub.deliver(room, m.Payload)
			}
		case *redis.Subscription:
			n.mu.Lock()
			room, ok := n.rooms[m.Channel]
			switch m.Kind {
			case "ssubscribe":
				waiters := n.wait[m.Channel]
				delete(n.wait, m.Channel)
				n.mu.Unlock()
				for _, w := range waiters {
					close(w)
				}
			case "sunsubscribe":
				asked := n.leave[m.Channel]
				delete(n.leave, m.Channel)
				if ok && !asked {
					// Redis moved the slot away: follow it.
					delete(n.rooms, m.Channel)
					n.mu.Unlock()
					go cs.rehome(n, map[string]presence.RoomRef{m.Channel: room}, false)
					continue
				}
				n.mu.Unlock()
			default:
				n.mu.Unlock()
			}
		}
	}
}
