package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/prometheus/client_golang/prometheus"
)

// Authenticator verifies bearer tokens. *auth.Verifier implements it.
type Authenticator interface {
	// Enabled reports whether auth is on (a key is configured).
	Enabled() bool
	// Verify checks a JWT and returns the identity it proves.
	Verify(ctx context.Context, raw string) (*presence.Identity, error)
	// IsAdminToken reports whether bearer is the admin token.
	IsAdminToken(bearer string) bool
}

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// CORSOrigins are the allowed browser origins (HTTP CORS and WebSocket
	// Origin). Nil means "*" when auth is off and none when it is on.
	CORSOrigins []string
	// AnonymousEmpty answers a heartbeat without a valid JWT with empty
	// tokens instead of 401 (PRESENCE_ANONYMOUS=empty).
	AnonymousEmpty bool
	// MaxBodyBytes limits request bodies. Zero means 64 KiB.
	MaxBodyBytes int64
	// BodyTimeout bounds reading an API request's body, counted from the end
	// of its headers; a body that is late gets 400 and its connection is
	// closed. Bodies are read before a request counts against MaxInFlight,
	// so slow ones cannot hold the slots. Zero means 5s.
	BodyTimeout time.Duration
	// Ready reports whether the node can serve (store and pub/sub up). Nil
	// means always ready.
	Ready func(context.Context) error
	// ReadyDetail adds to /readyz's answer (the read replica's state). Nil:
	// nothing.
	ReadyDetail func() map[string]any
	// Metrics serves /metrics. Nil means no metrics endpoint.
	Metrics http.Handler
	// Registerer receives the HTTP metrics. Nil means they are not exported.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger

	// Realtime enables /v1/ws: the node's real-time core, which the
	// sockets use. Nil: no WebSockets.
	Realtime *presence.Realtime
	// MaxSockets limits the WebSockets of the node. Zero means no limit.
	MaxSockets int
	// MaxInFlight limits the HTTP API requests served at once; more are
	// refused at once with 503, so a slow Redis cannot pile up requests
	// (and memory) without bound. A request counts once its body has been
	// read (BodyTimeout). Zero means 2000.
	MaxInFlight int
	// WSQueue is a socket's event queue. Zero means 256.
	WSQueue int
	// WSMaxMessageBytes limits a client message. Zero means 16 KiB.
	WSMaxMessageBytes int64
	// WSMessagesPerSecond limits a socket's messages. Zero means 50.
	WSMessagesPerSecond int
	// WSWriteTimeout bounds one write to a socket. Zero means 10s.
	WSWriteTimeout time.Duration
	// WSPingInterval is how often sockets are pinged. Zero means 15s.
	WSPingInterval time.Duration
	// ListCacheBytes bounds the node's cache of list pages (listcache.go).
	// Zero means 16 MiB; negative: no cache.
	ListCacheBytes int64
}

// Server is the HTTP and WebSocket side of a node.
type Server struct {
	echo *echo.Echo
	svc  *presence.Service
	auth Authenticator
	cfg  Config
	log  *slog.Logger

	rt       *presence.Realtime
	origins  *origins
	met      *wsMetrics
	lists    *listCache
	sockets  atomic.Int64
	draining atomic.Bool
	stopPing context.CancelFunc
	sockMu   sync.Mutex
	sockSet  map[*socket]struct{}
	closing  sync.Once

	heartbeatChain echo.HandlerFunc // the middlewares and s.heartbeat
}

// NewServer returns a Server for svc. auth may be nil: auth is then off.
func NewServer(svc *presence.Service, auth Authenticator, cfg Config) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if auth == nil {
		auth = noAuth{}
	}
	if cfg.CORSOrigins == nil && !auth.Enabled() {
		cfg.CORSOrigins = []string{"*"}
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 2000
	}
	if cfg.WSQueue == 0 {
		cfg.WSQueue = 256
	}
	if cfg.WSMaxMessageBytes == 0 {
		cfg.WSMaxMessageBytes = 16 << 10
	}
	if cfg.WSMessagesPerSecond == 0 {
		cfg.WSMessagesPerSecond = 50
	}
	if cfg.WSWriteTimeout == 0 {
		cfg.WSWriteTimeout = 10 * time.Second
	}
	if cfg.WSPingInterval == 0 {
		cfg.WSPingInterval = 15 * time.Second
	}
	s := &Server{echo: echo.New(), svc: svc, auth: auth, cfg: cfg, log: cfg.Logger, rt: cfg.Realtime, sockSet: map[*socket]struct{}{}}
	s.met = newWSMetrics(cfg.Registerer, cfg.Realtime)
	if cfg.ListCacheBytes == 0 {
		cfg.ListCacheBytes = 16 << 20
	}
	s.lists = newListCache(cfg.ListCacheBytes, cfg.Registerer)
	s.origins = newOrigins(cfg.CORSOrigins)
	if s.rt != nil {
		pctx, cancel := context.WithCancel(context.Background())
		s.stopPing = cancel
		go s.pingIdle(pctx)
	}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// Every request goes through these middlewares; ServeHTTP's heartbeat
	// path applies the same ones (built once, not per request as Echo does).
	var mws []echo.MiddlewareFunc
	use := func(m echo.MiddlewareFunc) { e.Use(m); mws = append(mws, m) }
	use(newMetrics(cfg.Registerer).middleware)
	use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.Error("panic", "path", c.Request().URL.Path, "err", err, "stack", string(stack))
		return err
	}}))
	if len(cfg.CORSOrigins) > 0 {
		use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOriginFunc: func(origin string) (bool, error) { return s.origins.allowed(origin), nil },
			AllowMethods:    []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete},
			AllowHeaders:    []string{"Authorization", "Content-Type", "If-None-Match"},
			ExposeHeaders:   []string{"ETag"},
			MaxAge:          600,
		}))
	}

	use(s.bufferBody()) // first the body, then a slot: see limitInFlight
	use(s.limitInFlight(cfg.MaxInFlight))
	v1 := e.Group("/v1")
	v1.POST("/heartbeat", s.heartbeat)
	s.heartbeatChain = s.heartbeat
	for i := len(mws) - 1; i >= 0; i-- {
		s.heartbeatChain = mws[i](s.heartbeatChain)
	}
	v1.GET("/list", s.list)
	v1.POST("/disconnect", s.disconnect)
	v1.POST("/signout", s.signout, s.authenticate)
	v1.GET("/rooms/:roomId/members", s.members, s.authenticate)
	v1.GET("/rooms/:roomId/count", s.count, s.authenticate)
	v1.PUT("/rooms/:roomId/members/:userId/data", s.setData, s.authenticate)
	v1.DELETE("/rooms/:roomId/members/:userId", s.removeMember, s.authenticate)
	v1.DELETE("/rooms/:roomId", s.removeRoom, s.authenticate)
	v1.GET("/users/:userId/rooms", s.userRooms, s.authenticate)
	v1.GET("/users/:userId/presence", s.userPresence, s.authenticate)
	v1.GET("/ws", s.serveWS)
	healthz := func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) }
	e.GET("/healthz", healthz)
	e.HEAD("/healthz", healthz)
	e.GET("/readyz", s.readyz)
	e.HEAD("/readyz", s.readyz)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}
	return s
}

// Sockets is the number of open WebSockets.
func (s *Server) Sockets() int { return int(s.sockets.Load()) }

// KeptSessions is the number of sessions the node keeps alive.
func (s *Server) KeptSessions() int {
	if s.rt == nil {
		return 0
	}
	return s.rt.Keeper().Len()
}

func (s *Server) register(sock *socket) {
	s.sockMu.Lock()
	s.sockSet[sock] = struct{}{}
	s.sockMu.Unlock()
}

func (s *Server) unregister(sock *socket) {
	s.sockMu.Lock()
	delete(s.sockSet, sock)
	s.sockMu.Unlock()
}

// Drain refuses new sockets and closes the open ones with 1012 (service
// restart) without ending their sessions: the clients resume them on other
// nodes, with no leave and no join. It returns when the sockets are closed
// or ctx is done.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	if s.rt != nil {
		// The sessions now live until their deadline: the clients resume
		// them on other nodes.
		s.rt.ReleaseAll(ctx)
	}
	s.sockMu.Lock()
	socks := make([]*socket, 0, len(s.sockSet))
	for sock := range s.sockSet {
		socks = append(socks, sock)
	}
	s.sockMu.Unlock()
	var wg sync.WaitGroup
	for _, sock := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sock.idleWait.closeHandshake(sock.conn, websocket.StatusServiceRestart, "node restarting")
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, sock := range socks {
			sock.conn.CloseNow()
		}
	}
	for s.sockets.Load() > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops the server's background work (pings). Sockets are not
// closed: use Drain. The Realtime is its owner's to close. Idempotent.
func (s *Server) Close() {
	s.closing.Do(func() {
		if s.stopPing != nil {
			s.stopPing()
		}
	})
}

// ServeHTTP serves the API. Echo routes on the escaped path, so that a path
// segment may hold an encoded "/" (a roomId "a/b" is /v1/rooms/a%2Fb/count);
// handlers unescape their parameters with param. (Set here, not in an Echo
// Pre middleware, which costs two closures per request.)
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.URL.RawPath = r.URL.EscapedPath()
	if r.Method == http.MethodPost && r.URL.RawPath == heartbeatPath {
		s.serveHeartbeat(w, r)
		return
	}
	s.echo.ServeHTTP(w, r)
}

// Echo returns the underlying Echo instance (to add routes).
func (s *Server) Echo() *echo.Echo { return s.echo }

// limitInFlight refuses a request with 503 when max requests are being
// served already (WebSockets are counted by MaxSockets instead). It runs
// after bufferBody: a slot counts only a request that is ready to run, never
// one still waiting for its body.
func (s *Server) limitInFlight(max int) echo.MiddlewareFunc {
	sem := make(chan struct{}, max)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p := c.Path(); !strings.HasPrefix(p, "/v1/") || p == "/v1/ws" {
				return next(c)
			}
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				return next(c)
			default:
				s.met.overloaded.Inc()
				return presence.Errorf(presence.EUNAVAILABLE, "the node is overloaded")
			}
		}
	}
}

func param(c echo.Context, name string) (string, error) {
	v, err := url.PathUnescape(c.Param(name))
	if err != nil {
		return "", presence.Errorf(presence.EINVALID, "%s is not a valid path segment", name)
	}
	return v, nil
}

// authenticate establishes the caller: the admin token (with ?org=), a
// verified JWT, or, with auth off, an anonymous caller of org "default" who
// names the user in the request and may use the admin endpoints.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := s.identify(c.Request())
		if err != nil {
			return err
		}
		ctx := presence.NewContextWithIdentity(c.Request().Context(), id)
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

func (s *Server) identify(r *http.Request) (*presence.Identity, error) {
	bearer := bearerToken(r)
	if bearer == "" && r.URL.Path == "/v1/ws" {
		bearer = r.URL.Query().Get("access_token")
	}
	if bearer != "" && s.auth.IsAdminToken(bearer) {
		org := r.URL.Query().Get("org")
		if org == "" {
			org = "default"
		}
		if err := presence.ValidateOrg(org); err != nil {
			return nil, err
		}
		return &presence.Identity{Org: org, Admin: true}, nil
	}
	if !s.auth.Enabled() {
		return &anonymous, nil
	}
	if bearer == "" {
		return nil, presence.Errorf(presence.EUNAUTHORIZED, "a bearer token is required")
	}
	return s.auth.Verify(r.Context(), bearer)
}

// anonymous is the caller when auth is off: shared by every request, and
// never modified.
var anonymous = presence.Identity{Org: "default", Admin: true}

func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// readBody reads a request body of at most MaxBodyBytes.
func (s *Server) readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, s.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, presence.Errorf(presence.EINVALID, "could not read the request body")
	}
	if err := s.checkBody(b); err != nil {
		return nil, err
	}
	return b, nil
}

// checkBody checks a request body read in full: its size and its text.
func (s *Server) checkBody(b []byte) error {
	if int64(len(b)) > s.cfg.MaxBodyBytes {
		return presence.Errorf(presence.ETOOLARGE, "request body over %d bytes", s.cfg.MaxBodyBytes)
	}
	// Invalid UTF-8 or a lone surrogate anywhere in a body is refused, never
	// replaced: it would merge two ids into one, or reach a WebSocket text
	// frame that browsers refuse.
	return presence.CheckJSONText(b)
}

type heartbeatRequest struct {
	RoomID    string          `json:"roomId"`
	SessionID string          `json:"sessionId"`
	Interval  *int64          `json:"interval"`
	Data      json.RawMessage `json:"data"`
	UserID    string          `json:"userId"`
	Name      string          `json:"name"`
	Image     string          `json:"image"`
	// Privacy flags: absent keeps the member's setting; not a boolean: 400.
	Invisible    *bool `json:"invisible"`
	HideLastSeen *bool `json:"hideLastSeen"`
}

var emptyTokens = map[string]string{"roomToken": "", "sessionToken": ""}

func (s *Server) heartbeat(c echo.Context) error {
	id, err := s.identify(c.Request())
	if err != nil {
		if s.cfg.AnonymousEmpty && presence.ErrorCode(err) == presence.EUNAUTHORIZED {
			return c.JSON(http.StatusOK, emptyTokens)
		}
		return err
	}
	b, err := s.heartbeatBody(c)
	if err != nil {
		return err
	}
	req, err := decodeHeartbeat(b)
	if err != nil {
		return err
	}
	interval, err := presence.IntervalMillis(req.Interval)
	if err != nil {
		return err
	}
	in := presence.HeartbeatInput{RoomID: req.RoomID, SessionID: req.SessionID, Interval: interval, Data: req.Data,
		UserID: req.UserID, Name: req.Name, Image: req.Image, Invisible: req.Invisible, HideLastSeen: req.HideLastSeen}
	ctx := presence.NewContextWithIdentity(c.Request().Context(), id)
	out, err := s.svc.Heartbeat(ctx, in)
	if err != nil {
		return err
	}
	return s.writeHeartbeat(c, out)
}

func (s *Server) list(c echo.Context) error {
	limit, err := intQuery(c, "limit")
	if err != nil {
		return err
	}
	if inv, err := boolQuery(c, "includeInvisible"); err != nil {
		return err
	} else if inv {
		return presence.Errorf(presence.EFORBIDDEN, "includeInvisible is for admin calls only (GET /v1/rooms/{roomId}/members)")
	}
	r, err := s.svc.PrepareList(c.QueryParam("roomToken"), limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	return s.serveList(c, r)
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func (s *Server) disconnect(c echo.Context) error {
	b, err := s.readBody(c)
	if err != nil {
		return err
	}
	token := ""
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var req struct {
			SessionToken string `json:"sessionToken"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return presence.Errorf(presence.EINVALID, "the body must be {\"sessionToken\":\"...\"} or the bare token")
		}
		token = req.SessionToken
	} else {
		// navigator.sendBeacon sends the bare token as text/plain.
		token = string(b)
	}
	if err := s.svc.Disconnect(c.Request().Context(), token); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) signout(c echo.Context) error {
	forget, err := boolQuery(c, "forget")
	if err != nil {
		return err
	}
	userID := c.QueryParam("userId")
	if b, err := s.readBody(c); err != nil {
		return err
	} else if b = bytes.TrimSpace(b); len(b) > 0 {
		var req struct {
			UserID string `json:"userId"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return presence.Errorf(presence.EINVALID, "the body must be a JSON object")
		}
		if req.UserID != "" {
			userID = req.UserID
		}
	}
	n, err := s.svc.SignOut(c.Request().Context(), userID, forget)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int{"rooms": n})
}

func (s *Server) members(c echo.Context) error {
	roomID, err := param(c, "roomId")
	if err != nil {
		return err
	}
	onlineOnly, limit, err := listQuery(c)
	if err != nil {
		return err
	}
	includeInvisible, err := boolQuery(c, "includeInvisible")
	if err != nil {
		return err
	}
	r, err := s.svc.PrepareMembersQuery(c.Request().Context(), roomID, presence.MembersQuery{OnlineOnly: onlineOnly,
		Limit: limit, Cursor: c.QueryParam("cursor"), IncludeInvisible: includeInvisible})
	if err != nil {
		return err
	}
	return s.serveList(c, r)
}

func (s *Server) count(c echo.Context) error {
	roomID, err := param(c, "roomId")
	if err != nil {
		return err
	}
	n, err := s.svc.Count(c.Request().Context(), roomID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, n)
}

func (s *Server) setData(c echo.Context) error {
	roomID, err := param(c, "roomId")
	if err != nil {
		return err
	}
	userID, err := param(c, "userId")
	if err != nil {
		return err
	}
	b, err := s.readBody(c)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return presence.Errorf(presence.EINVALID, "the body must be the data as JSON")
	}
	if err := s.svc.SetData(c.Request().Context(), roomID, userID, b); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) removeMember(c echo.Context) error {
	roomID, err := param(c, "roomId")
	if err != nil {
		return err
	}
	userID, err := param(c, "userId")
	if err != nil {
		return err
	}
	if err := s.svc.RemoveMember(c.Request().Context(), roomID, userID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) removeRoom(c echo.Context) error {
	roomID, err := param(c, "roomId")
	if err != nil {
		return err
	}
	if err := s.svc.RemoveRoom(c.Request().Context(), roomID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) userRooms(c echo.Context) error {
	userID, err := param(c, "userId")
	if err != nil {
		return err
	}
	onlineOnly, limit, err := listQuery(c)
	if err != nil {
		return err
	}
	rooms, err := s.svc.UserRooms(c.Request().Context(), userID, onlineOnly, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"userId": userID, "rooms": rooms})
}

func (s *Server) userPresence(c echo.Context) error {
	userID, err := param(c, "userId")
	if err != nil {
		return err
	}
	p, err := s.svc.UserPresence(c.Request().Context(), userID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) readyz(c echo.Context) error {
	if s.draining.Load() {
		return presence.Errorf(presence.EUNAVAILABLE, "draining")
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			return presence.Errorf(presence.EUNAVAILABLE, "not ready")
		}
	}
	body := map[string]any{"status": "ready"}
	if s.cfg.ReadyDetail != nil {
		for k, v := range s.cfg.ReadyDetail() {
			body[k] = v
		}
	}
	return c.JSON(http.StatusOK, body)
}

// listQuery reads ?onlineOnly= and ?limit= (zero: the default).
func listQuery(c echo.Context) (onlineOnly bool, limit int, err error) {
	if onlineOnly, err = boolQuery(c, "onlineOnly"); err != nil {
		return false, 0, err
	}
	limit, err = intQuery(c, "limit")
	return onlineOnly, limit, err
}

func intQuery(c echo.Context, name string) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n == 0 {
		return 0, presence.Errorf(presence.EINVALID, "%s must be a positive integer", name)
	}
	return n, nil
}

func boolQuery(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, presence.Errorf(presence.EINVALID, "%s must be true or false", name)
	}
	return b, nil
}

// noAuth is the Authenticator when auth is off.
type noAuth struct{}

func (noAuth) Enabled() bool { return false }
func (noAuth) Verify(context.Context, string) (*presence.Identity, error) {
	return nil, presence.Errorf(presence.EUNAUTHORIZED, "auth is off")
}
func (noAuth) IsAdminToken(string) bool { return false }
