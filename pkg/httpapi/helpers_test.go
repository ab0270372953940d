package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

var hsSecret = []byte("0123456789abcdef0123456789abcdef-test")

const adminToken = "admin-token-for-tests"

type stackOpts struct {
	auth           bool // HS256 with hsSecret, admin token adminToken
	anonymousEmpty bool
	redis          *redistest.Server // nil: start one
}

type stack struct {
	t      *testing.T
	url    string
	rdb    redis.UniversalClient
	prefix string
	srv    *redistest.Server
}

func newStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	opts := httpapitest.Options{Redis: o.redis, AnonymousEmpty: o.anonymousEmpty}
	if o.auth {
		opts.Auth = &auth.Config{HS256Secret: hsSecret, AdminToken: adminToken}
	}
	n := httpapitest.Start(t, opts)
	return &stack{t: t, url: n.URL, rdb: n.Redis, prefix: n.Prefix, srv: n.Srv}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (r resp) code() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a request; headers are "Name: value" strings.
func (s *stack) do(method, path string, body any, headers ...string) resp {
	s.t.Helper()
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (s *stack) beat(body map[string]any, headers ...string) resp {
	s.t.Helper()
	return s.do("POST", "/v1/heartbeat", body, headers...)
}

func (s *stack) mustBeat(body map[string]any, headers ...string) (roomToken, sessionToken string) {
	s.t.Helper()
	r := s.beat(body, headers...)
	if r.status != 200 {
		s.t.Fatalf("heartbeat %v: %d %s", body, r.status, r.body)
	}
	m := r.json(s.t)
	return m["roomToken"].(string), m["sessionToken"].(string)
}

func (s *stack) list(token string) presence.RoomList {
	s.t.Helper()
	r := s.do("GET", "/v1/list?roomToken="+token, nil)
	if r.status != 200 {
		s.t.Fatalf("list: %d %s", r.status, r.body)
	}
	var l presence.RoomList
	json.Unmarshal(r.body, &l)
	return l
}

// state is every key of the stack's prefix with its content, to check that
// a refused request changed nothing.
func (s *stack) state() string {
	s.t.Helper()
	ctx := context.Background()
	keys, err := s.rdb.Keys(ctx, s.prefix+":*").Result()
	if err != nil {
		s.t.Fatal(err)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		typ, _ := s.rdb.Type(ctx, k).Result()
		var v any
		switch typ {
		case "hash":
			v, _ = s.rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, _ = s.rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			v, _ = s.rdb.Get(ctx, k).Result()
		}
		fmt.Fprintf(&b, "%s %s %v\n", k, typ, v)
	}
	return b.String()
}

// jwt signs an HS256 token for a user of an org.
func jwt(t testing.TB, claims map[string]any) string {
	return authHS256(t, claims)
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
