package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// MustRunMain runs the real wiring on 127.0.0.1:0 with the given settings.
func MustRunMain(tb testing.TB, env map[string]string, opts ...func(*Main)) *Main {
	tb.Helper()
	m := NewMain()
	env["PRESENCE_ADDR"] = "127.0.0.1:0"
	if err := m.ParseFlags(nil, lookup(env)); err != nil {
		tb.Fatal(err)
	}
	for _, o := range opts {
		o(m)
	}
	m.Logger = m.Logger.With("test", tb.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

func post(tb testing.TB, url, body string) map[string]any {
	tb.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		tb.Fatalf("POST %s: %d %s", url, res.StatusCode, b)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	res, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// exercise runs a heartbeat, a list and the health endpoints through a node.
func exercise(t *testing.T, base string) {
	out := post(t, base+"/v1/heartbeat", `{"roomId":"lobby","sessionId":"s1","userId":"ada","interval":1000}`)
	tok, _ := out["roomToken"].(string)
	code, body := get(t, base+"/v1/list?roomToken="+tok)
	if code != 200 || !strings.Contains(body, `"userId":"ada","online":true`) {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		// A node is ready once its pub/sub connection is up, which may
		// come a moment after Run returns: poll.
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, body := get(t, base+p)
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %s", p, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The node's reaper ends the 1 s session within 2.5 s + 1 s.
	deadline := time.Now().Add(3500 * time.Millisecond)
	for {
		_, body = get(t, base+"/v1/list?roomToken="+tok)
		if strings.Contains(body, `"online":false`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still online: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMainWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": "e2e"})
	exercise(t, "http://"+m.Addr())
	n, err := srv.Client(t).Exists(context.Background(), "e2e:{default::lobby}:room", "e2e:{default::lobby}:order").Result()
	if err != nil || n != 2 { // the room's hash and its members' order
		t.Fatalf("keys in Redis: %d %v", n, err)
	}
}

func TestMainEmbedded(t *testing.T) {
	addr := "127.0.0.1:" + itoa(redistest.FreePort(t))
	m := MustRunMain(t, map[string]string{"PRESENCE_EMBEDDED_REDIS_ADDR": addr})
	if m.embedded == nil {
		t.Fatal("no embedded store")
	}
	exercise(t, "http://"+m.Addr())
	// redis-cli (or any client) can inspect the embedded store.
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if n, err := c.ZCard(context.Background(), "presence:{default::lobby}:order").Result(); err != nil || n != 1 {
		t.Fatalf("embedded store over RESP: %d %v", n, err)
	}
}

func TestMainWithAuth(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{
		"PRESENCE_REDIS_URL":        srv.URL(),
		"PRESENCE_JWT_HS256_SECRET": "0123456789abcdef0123456789abcdef",
		"PRESENCE_ANONYMOUS":        "empty",
	})
	out := post(t, "http://"+m.Addr()+"/v1/heartbeat", `{"roomId":"lobby","sessionId":"s1"}`)
	if out["roomToken"] != "" || out["sessionToken"] != "" {
		t.Fatalf("anonymous heartbeat: %v", out)
	}
	if code, _ := get(t, "http://"+m.Addr()+"/v1/rooms/lobby/count"); code != 401 {
		t.Fatalf("count without a token: %d", code)
	}
}

func TestParseConfig(t *testing.T) {
	env := map[string]string{"PRESENCE_ADDR": ":9000", "PRESENCE_TIMEOUT_FACTOR": "3", "PRESENCE_CORS_ORIGINS": "https://a, https://b"}
	c, err := ParseConfig([]string{"--addr", ":9001", "--offline-retention", "1h"}, lookup(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9001" || c.TimeoutFactor != 3 || c.OfflineRetention != time.Hour || c.KeyPrefix != "presence" ||
		len(c.CORSOrigins) != 2 || c.CORSOrigins[1] != "https://b" || c.Anonymous != "reject" || c.MaxDataBytes != 4096 {
		t.Fatalf("config = %+v", c)
	}
	for _, bad := range [][]string{
		{"--timeout-factor", "x"}, {"--timeout-factor", "0.5"}, {"--anonymous", "maybe"},
		{"--offline-retention", "-1h"}, {"--max-data-bytes", "1"}, {"--nope"}, {"extra"},
	} {
		if _, err := ParseConfig(bad, lookup(nil), io.Discard); err == nil {
			t.Errorf("ParseConfig(%v) accepted", bad)
		}
	}
	// Set but empty counts: no CORS origins at all.
	c, err = ParseConfig(nil, lookup(map[string]string{"PRESENCE_CORS_ORIGINS": ""}), io.Discard)
	if err != nil || !c.CORSOriginsSet || len(c.CORSOrigins) != 0 {
		t.Fatalf("empty PRESENCE_CORS_ORIGINS: %+v %v", c, err)
	}
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestMetrics: the node exports the metrics the README documents, and they
// move with the traffic.
func TestMetrics(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL()})
	base := "http://" + m.Addr()
	post(t, base+"/v1/heartbeat", `{"roomId":"r","sessionId":"s","userId":"u","interval":1000}`)
	deadline := time.Now().Add(6 * time.Second)
	for {
		_, body := get(t, base+"/metrics")
		missing := []string{}
		for _, want := range []string{
			`presence_heartbeats_total 1`, `presence_sessions_reaped_total 1`,
			`presence_redis_call_duration_seconds_count{cmd="pipeline"}`, `presence_http_requests_total{route="/v1/heartbeat",status="200"} 1`,
			`presence_websockets 0`, `presence_sessions_kept_alive 0`, `presence_events_received_total`,
			`presence_pubsub_reconnects_total`, `presence_syncs_sent_total`, `presence_ws_rate_limited_total`,
			`presence_events_delivered_total`, `presence_batches_delivered_total`, `presence_http_overloaded_total`, `go_goroutines`, `process_open_fds`,
		} {
			if !strings.Contains(body, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics missing %v", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRoomFramesConfig: PRESENCE_WS_ROOM_FRAMES defaults to 20 and must be a
// positive integer (0 would never let a frame out).
func TestRoomFramesConfig(t *testing.T) {
	c, err := ParseConfig(nil, lookup(nil), io.Discard)
	if err != nil || c.WSRoomFrames != 20 {
		t.Fatalf("default: %d %v; want 20", c.WSRoomFrames, err)
	}
	c, err = ParseConfig([]string{"--ws-room-frames", "5"}, lookup(nil), io.Discard)
	if err != nil || c.WSRoomFrames != 5 {
		t.Fatalf("--ws-room-frames 5: %d %v", c.WSRoomFrames, err)
	}
	for _, bad := range []string{"0", "-1", "x", "1.5", ""} {
		_, err := ParseConfig(nil, lookup(map[string]string{"PRESENCE_WS_ROOM_FRAMES": bad}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "PRESENCE_WS_ROOM_FRAMES") && !strings.Contains(err.Error(), "ws-room-frames") {
			t.Errorf("PRESENCE_WS_ROOM_FRAMES=%q: %v; want a config error naming it", bad, err)
		}
	}
}

// TestRedisClientOptions: every kind of Redis client a node opens keeps few
// idle and pipeline connections, with small buffers (what a burst leaves
// behind stays small). The clients dial lazily: nothing listens here.
func TestRedisClientOptions(t *testing.T) {
	check := func(name string, idle, pipes, rbuf, wbuf, prbuf, pwbuf int) {
		t.Helper()
		if idle != redisstore.MaxIdleConns || pipes != redisstore.PipelinePoolSize || rbuf != redisstore.ReadBufferSize ||
			wbuf != redisstore.WriteBufferSize || prbuf != redisstore.PipelineReadBufferSize || pwbuf != redisstore.PipelineWriteBufferSize {
			t.Errorf("%s: idle %d, pipeline pool %d, buffers %d/%d, pipeline buffers %d/%d", name, idle, pipes, rbuf, wbuf, prbuf, pwbuf)
		}
	}
	for _, c := range []Config{
		{RedisURL: "redis://127.0.0.1:1", RedisReplicaURL: "redis://127.0.0.1:2"},
		{RedisClusterAddrs: []string{"127.0.0.1:1"}},
		{SentinelAddrs: []string{"127.0.0.1:1"}, SentinelMaster: "m"},
	} {
		m := &Main{Logger: slog.New(slog.DiscardHandler)}
		if err := m.openRedis(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		clients := []redis.UniversalClient{m.rdb}
		if m.replica != nil {
			clients = append(clients, m.replica)
		}
		for _, rdb := range clients {
			switch r := rdb.(type) {
			case *redis.Client:
				o := r.Options()
				check(fmt.Sprintf("%+v", c), o.MaxIdleConns, o.PipelinePoolSize, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)
			case *redis.ClusterClient:
				o := r.Options()
				check("cluster", o.MaxIdleConns, o.PipelinePoolSize, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)
			default:
				t.Fatalf("%T", rdb)
			}
			rdb.Close()
		}
	}
}
