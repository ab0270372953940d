package presence

import (
	"context"
	"sync"
	"time"
)

// UserPresence is a user's org-wide state: online while it has a live
// session in any room of the org; Rooms counts the rooms where it is
// online; LastDisconnected is when it went offline everywhere (unix ms; 0
// while online or if never seen).
type UserPresence struct {
	UserID           string `json:"userId"`
	Online           bool   `json:"online"`
	LastDisconnected int64  `json:"lastDisconnected"`
	Rooms            int    `json:"rooms"`
}

// SummarizeRooms computes a user's org-wide state from its rooms (the
// store's UserRooms): online if online in any, lastDisconnected the latest
// of its rooms when offline everywhere.
func SummarizeRooms(userID string, rooms []UserRoom) UserPresence {
	p := UserPresence{UserID: userID}
	for _, r := range rooms {
		if r.Online {
			p.Online = true
			p.Rooms++
		} else if r.LastDisconnected > p.LastDisconnected {
			p.LastDisconnected = r.LastDisconnected
		}
	}
	if p.Online {
		p.LastDisconnected = 0
	}
	return p
}

// UserSubscriber is implemented by a Subscriber that also follows users'
// org-wide changes (redisstore.Subscriber). Without it, watched users get
// their state when watched, and no changes.
type UserSubscriber interface {
	SubscribeUser(ctx context.Context, org, userID string) error
	UnsubscribeUser(ctx context.Context, org, userID string) error
}

// UserEventHandler takes what a UserSubscriber delivers. Its methods must
// not block.
type UserEventHandler interface {
	// OnUserEvent takes a change of a followed user's org-wide online state.
	OnUserEvent(org string, p UserPresence)
	// OnUserResubscribe takes a user whose subscription was restored after
	// a lost connection: changes may have been missed.
	OnUserResubscribe(org, userID string)
}

// MaxWatchedUsers is how many users one connection may watch.
const MaxWatchedUsers = 1000

// UserPresence returns a user's org-wide state, computed from its rooms.
// Any user of the org, and the admin, may ask; a user of another org (or
// one never seen) is offline, with no rooms. The user itself and the admin
// get the truth; anyone else what the user's privacy settings let them see
// (UserRoom.Public).
func (s *Service) UserPresence(ctx context.Context, userID string) (UserPresence, error) {
	id := IdentityFromContext(ctx)
	if id == nil {
		return UserPresence{}, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if err := ValidateUserID(userID); err != nil {
		return UserPresence{}, err
	}
	return s.userPresence(ctx, id.Org, userID, id.Admin || id.UserID == userID)
}

// userPresence reads a user's org-wide state: the truth, or what the others
// see.
func (s *Service) userPresence(ctx context.Context, org, userID string, truth bool) (UserPresence, error) {
	rooms, err := s.store.UserRooms(ctx, org, userID, 0)
	if err != nil {
		return UserPresence{}, err
	}
	if !truth {
		for i := range rooms {
			rooms[i] = rooms[i].Public()
		}
	}
	return SummarizeRooms(userID, rooms), nil
}

// UsersReader is implemented by a Store that reads many users' org-wide
// states in a few round trips (redisstore.Store); without it they are read
// one by one from UserRooms.
type UsersReader interface {
	UsersPresence(ctx context.Context, org string, userIDs []string) ([]UserPresence, error)
}

// usersPresence reads the state of many users of an org.
func (s *Service) usersPresence(ctx context.Context, org string, userIDs []string) ([]UserPresence, error) {
	if r, ok := s.store.(UsersReader); ok {
		return r.UsersPresence(ctx, org, userIDs)
	}
	out := make([]UserPresence, len(userIDs))
	errs := make([]error, len(userIDs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, u := range userIDs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = s.userPresence(ctx, org, u, false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// userKey names a user of an org.
type userKey struct{ org, user string }

// rtUser is a user the node follows for its connections.
type rtUser struct {
	follow
	id    string // the node's one copy of the id, shared by its watchers
	conns map[*Conn]struct{}
}

// What a connection last sent of a watched user (Conn.users).
const (
	sentOnline  uint8 = 1
	sentOffline uint8 = 2
)

// OnUserEvent hands a change of a user's org-wide state to the connections
// that watch it (UserEventHandler): one Update shared by all of them.
func (rt *Realtime) OnUserEvent(org string, p UserPresence) {
	u := &Update{User: &p}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if r := rt.users[userKey{org, p.UserID}]; r != nil {
		for c := range r.conns {
			c.pushUser(u)
		}
	}
}

// OnUserResubscribe reads a user's state again after its subscription was
// restored (UserEventHandler), and hands it to the connections that watch
// it (each socket sends it only if it differs from what it sent last).
// A reconnect restores many users at once: they are read together, 100 ms
// after the first.
func (rt *Realtime) OnUserResubscribe(org, userID string) {
	rt.resubMu.Lock()
	defer rt.resubMu.Unlock()
	if rt.resub == nil {
		rt.resub = map[userKey]bool{}
		time.AfterFunc(100*time.Millisecond, rt.refreshResubscribed)
	}
	rt.resub[userKey{org, userID}] = true
}

func (rt *Realtime) refreshResubscribed() {
	rt.resubMu.Lock()
	byOrg := map[string][]string{}
	for k := range rt.resub {
		byOrg[k.org] = append(byOrg[k.org], k.user)
	}
	rt.resub = nil
	rt.resubMu.Unlock()
	for org, users := range byOrg {
		rt.refreshUsers(org, users)
	}
}

// refreshAllUsers reads every watched user's state again and hands it to
// its watchers.
func (rt *Realtime) refreshAllUsers() {
	byOrg := map[string][]string{}
	rt.mu.Lock()
	for k := range rt.users {
		byOrg[k.org] = append(byOrg[k.org], k.user)
	}
	rt.mu.Unlock()
	for org, users := range byOrg {
		rt.refreshUsers(org, users)
	}
}

// refreshUsers reads users' states and hands them to their watchers.
func (rt *Realtime) refreshUsers(org string, userIDs []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := rt.svc.usersPresence(ctx, org, userIDs)
	if err != nil {
		rt.cfg.Logger.Warn("read watched users", "err", err)
		return
	}
	for _, p := range ps {
		rt.OnUserEvent(org, p)
	}
}

func (rt *Realtime) acquireUser(ctx context.Context, k userKey) error {
	us, ok := rt.sub.(UserSubscriber)
	if !ok {
		return nil
	}
	return acquireFollow(ctx, &rt.mu, rt.users, k,
		func() *rtUser { return &rtUser{follow: newFollow(), id: k.user, conns: map[*Conn]struct{}{}} },
		func(ctx context.Context) error { return us.SubscribeUser(ctx, k.org, k.user) },
		func() { rt.releaseUser(k) })
}

func (rt *Realtime) releaseUser(k userKey) {
	us, ok := rt.sub.(UserSubscriber)
	if !ok {
		return
	}
	releaseFollow(&rt.mu, rt.users, k, func(ctx context.Context) error {
		return us.UnsubscribeUser(ctx, k.org, k.user)
	}, rt.cfg.Logger)
}

// WatchUsers starts watching users of the connection's org (at most
// MaxWatchedUsers in all) and returns their states, one per id in order.
// From then on, each change of a watched user's online state reaches the
// connection's Sink as an Update with User set.
func (c *Conn) WatchUsers(ctx context.Context, userIDs []string) ([]UserPresence, error) {
	id := IdentityFromContext(ctx)
	if id == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if len(userIDs) == 0 {
		return nil, Errorf(EINVALID, "userIds must list at least one user")
	}
	var fresh []string
	seen := map[string]bool{}
	for _, u := range userIDs {
		if err := ValidateUserID(u); err != nil {
			return nil, err
		}
		if !seen[u] && !c.watchingUser(u) {
			fresh = append(fresh, u)
		}
		seen[u] = true
	}
	if c.userCount()+len(fresh) > MaxWatchedUsers {
		return nil, Errorf(ELIMIT, "at most %d watched users per socket", MaxWatchedUsers)
	}
	rt := c.rt
	for i, u := range fresh {
		if err := rt.acquireUser(ctx, userKey{id.Org, u}); err != nil {
			for _, v := range fresh[:i] {
				rt.releaseUser(userKey{id.Org, v})
			}
			return nil, err
		}
	}
	// Follow first, then read: a change after the read reaches the
	// connection. Changes that arrive before the answer is out are held
	// back (pending) and read again after it (RecheckUsers).
	rt.mu.Lock()
	for i, u := range fresh {
		if r := rt.users[userKey{id.Org, u}]; r != nil {
			r.conns[c] = struct{}{}
			fresh[i] = r.id
		}
	}
	rt.mu.Unlock()
	c.mu.Lock()
	c.org = id.Org
	if c.users == nil {
		c.users = map[string]uint8{}
	}
	for _, u := range fresh {
		c.users[u] = 0
	}
	for u := range seen {
		if c.usersPending == nil {
			c.usersPending = map[string]bool{}
		}
		if !c.usersPending[u] {
			c.usersPending[u] = false
		}
	}
	c.mu.Unlock()
	out, err := rt.svc.usersPresence(ctx, id.Org, userIDs)
	if err != nil {
		c.mu.Lock()
		c.usersPending = nil
		c.mu.Unlock()
		c.UnwatchUsers(fresh)
		return nil, err
	}
	return out, nil
}

// RecheckUsers sends, after the answer to WatchUsers is out, the state of
// the users whose changes arrived while it was read.
func (c *Conn) RecheckUsers(ctx context.Context) {
	id := IdentityFromContext(ctx)
	c.mu.Lock()
	var again []string
	for u, changed := range c.usersPending {
		if changed {
			again = append(again, u)
		}
	}
	c.usersPending = nil
	c.mu.Unlock()
	if len(again) == 0 || id == nil {
		return
	}
	ps, err := c.rt.svc.usersPresence(ctx, id.Org, again)
	if err != nil {
		return
	}
	for _, p := range ps {
		c.pushUser(&Update{User: &p})
	}
}

// UnwatchUsers stops watching users (ids not watched are ignored).
func (c *Conn) UnwatchUsers(userIDs []string) {
	var org string
	c.mu.Lock()
	org = c.org
	var gone []string
	for _, u := range userIDs {
		if _, ok := c.users[u]; ok {
			delete(c.users, u)
			gone = append(gone, u)
		}
	}
	c.mu.Unlock()
	rt := c.rt
	rt.mu.Lock()
	for _, u := range gone {
		if r := rt.users[userKey{org, u}]; r != nil {
			delete(r.conns, c)
		}
	}
	rt.mu.Unlock()
	for _, u := range gone {
		rt.releaseUser(userKey{org, u})
	}
}

// WatchedUsers returns the users the connection watches. Any goroutine.
func (c *Conn) WatchedUsers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.users))
	for u := range c.users {
		out = append(out, u)
	}
	return out
}

// ResyncUsers reads the state of every watched user (after the connection
// dropped what was queued). Any goroutine.
func (c *Conn) ResyncUsers(ctx context.Context) []UserPresence {
	c.mu.Lock()
	org := c.org
	c.mu.Unlock()
	users := c.WatchedUsers()
	if len(users) == 0 {
		return nil
	}
	ps, err := c.rt.svc.usersPresence(ctx, org, users)
	if err != nil {
		return nil
	}
	return ps
}

func (c *Conn) watchingUser(u string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.users[u]
	return ok
}

func (c *Conn) userCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.users)
}

// pushUser hands a user's change to the connection, unless its WatchUsers
// answer is not out yet (then RecheckUsers reads it again). rt.mu may be
// held.
func (c *Conn) pushUser(u *Update) {
	c.mu.Lock()
	if _, ok := c.usersPending[u.User.UserID]; ok {
		c.usersPending[u.User.UserID] = true
		c.mu.Unlock()
		return
	}
	_, watched := c.users[u.User.UserID]
	c.mu.Unlock()
	if watched {
		c.sink.Push(u)
	}
}

// PassUser reports whether p should be sent to the client: only if it
// differs from the last state of that user sent (so a publication seen
// twice, a retried step or a re-read never reaches a client twice), and
// only while the user is watched; it records it if so. The connection's
// writer calls it, in the order it writes. Any goroutine.
func (c *Conn) PassUser(p UserPresence) bool {
	sent := sentOffline
	if p.Online {
		sent = sentOnline
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok := c.users[p.UserID]
	if !ok || last == sent {
		return false
	}
	c.users[p.UserID] = sent
	return true
}

// SentUsers records the states a WatchUsers answer sent (the writer calls
// it when it writes the answer).
func (c *Conn) SentUsers(ps []UserPresence) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps {
		if _, ok := c.users[p.UserID]; ok {
			c.users[p.UserID] = sentOffline
			if p.Online {
				c.users[p.UserID] = sentOnline
			}
		}
	}
}
