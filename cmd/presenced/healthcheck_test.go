package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// runHealthcheck runs `presenced healthcheck args...` with env and returns
// its exit status and stderr.
func runHealthcheck(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	code := Healthcheck(context.Background(), args, lookup(env), &stderr)
	return code, stderr.String()
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// wantFailure checks a failed check: exit status 1 and one line on stderr
// that contains want.
func wantFailure(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code != 1 {
		t.Errorf("exit status %d, want 1 (stderr %q)", code, stderr)
	}
	if !strings.HasPrefix(stderr, "presenced healthcheck: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr %q: want one line starting with \"presenced healthcheck: \"", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not mention %q", stderr, want)
	}
}

// waitHealthy runs the check until it passes: a node is ready once its
// pub/sub connection is up, shortly after Run returns.
func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, stderr := runHealthcheck(t, nil, "--addr", addr)
		if code == 0 && stderr == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node is not ready after 5 s: exit status %d, stderr %q", code, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHealthcheckReadyNode(t *testing.T) {
	m := MustRunMain(t, map[string]string{})
	waitHealthy(t, m.Addr())
	_, port, _ := net.SplitHostPort(m.Addr())

	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"flag":                        {nil, []string{"--addr", m.Addr()}},
		"env, unspecified host":       {map[string]string{"PRESENCE_ADDR": ":" + port}, nil},
		"env 0.0.0.0":                 {map[string]string{"PRESENCE_ADDR": "0.0.0.0:" + port}, nil},
		"the flag wins over the env":  {map[string]string{"PRESENCE_ADDR": closedAddr(t)}, []string{"-addr", ":" + port}},
		"the flag with an = and host": {nil, []string{"--addr=localhost:" + port}},
	} {
		t.Run(name, func(t *testing.T) {
			if code, stderr := runHealthcheck(t, tc.env, tc.args...); code != 0 || stderr != "" {
				t.Errorf("exit status %d, stderr %q: want 0 and nothing", code, stderr)
			}
		})
	}

	// A draining node answers /readyz with 503.
	m.node.Drain(context.Background())
	code, stderr := runHealthcheck(t, nil, "--addr", m.Addr())
	wantFailure(t, code, stderr, "503 Service Unavailable (draining)")
}

func TestHealthcheckStoreDown(t *testing.T) {
	m := MustRunMain(t, map[string]string{})
	waitHealthy(t, m.Addr())
	m.embedded.Close()
	code, stderr := runHealthcheck(t, nil, "--addr", m.Addr())
	wantFailure(t, code, stderr, "503 Service Unavailable (not ready)")
}

func TestHealthcheckNoNode(t *testing.T) {
	addr := closedAddr(t)
	code, stderr := runHealthcheck(t, map[string]string{"PRESENCE_ADDR": addr})
	wantFailure(t, code, stderr, "connection refused")

	// The default address, :8080, when nothing else says: the check asks
	// 127.0.0.1:8080, whatever answers there (or not) here.
	if u, err := readyURL(settingDefault("PRESENCE_ADDR")); err != nil || u != "http://127.0.0.1:8080/readyz" {
		t.Errorf("default address: %q %v", u, err)
	}
}

func TestHealthcheckTimeout(t *testing.T) {
	// A node that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	start := time.Now()
	code, stderr := runHealthcheck(t, nil, "--addr", ln.Addr().String())
	wantFailure(t, code, stderr, "deadline exceeded")
	if d := time.Since(start); d < healthcheckTimeout || d > healthcheckTimeout+time.Second {
		t.Errorf("the check took %v, want about %v", d, healthcheckTimeout)
	}
}

func TestHealthcheckUsage(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"extra"}, {"--addr", "no-port"}, {"--addr", ":0"}, {"--addr", ""}} {
		code, stderr := runHealthcheck(t, nil, args...)
		wantFailure(t, code, stderr, "")
	}
	if code, stderr := runHealthcheck(t, nil, "-h"); code != 0 || !strings.Contains(stderr, "-addr") {
		t.Errorf("-h: exit status %d, stderr %q", code, stderr)
	}
}

func TestHealthcheckReadyURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":              "http://127.0.0.1:8080/readyz",
		"0.0.0.0:9000":       "http://127.0.0.1:9000/readyz",
		"[::]:9000":          "http://127.0.0.1:9000/readyz",
		"127.0.0.1:9000":     "http://127.0.0.1:9000/readyz",
		"10.1.2.3:9000":      "http://10.1.2.3:9000/readyz",
		"[::1]:9000":         "http://[::1]:9000/readyz",
		"localhost:9000":     "http://localhost:9000/readyz",
		"node.internal:8080": "http://node.internal:8080/readyz",
	} {
		if got, err := readyURL(addr); err != nil || got != want {
			t.Errorf("readyURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}
