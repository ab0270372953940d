package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// The fault suite runs real presenced processes (the binary built from this
// package) against a real redis-server, and injects faults one at a time.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// presencedBinary builds the node once per test binary.
func presencedBinary(tb testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "presenced-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "presenced")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// proc is one presenced process, restartable on the same address.
type proc struct {
	name string
	addr string
	env  []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(tb testing.TB, name string, env map[string]string) *proc {
	tb.Helper()
	p := &proc{name: name, addr: fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(tb)), log: filepath.Join(tb.TempDir(), name+".log")}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	p.env = append(p.env, "PRESENCE_ADDR="+p.addr, "PRESENCE_NODE_ID="+name, "PRESENCE_LOG_LEVEL=warn")
	p.start(tb)
	tb.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) url() string { return "http://" + p.addr }

func (p *proc) start(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(presencedBinary(tb))
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(p.url() + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			tb.Fatalf("%s exited at start; log:\n%s", p.name, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready; log:\n%s", p.name, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL (by pid) and waits. Idempotent.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop freezes the node (SIGSTOP) and returns once it is stopped (state T
// in /proc: a signal is delivered asynchronously, and a busy machine could
// let the node run a little longer); cont thaws it (SIGCONT).
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGSTOP)
	stat := fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		// "pid (comm) S ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return
		}
	}
}
func (p *proc) cont() { p.cmd.Process.Signal(syscall.SIGCONT) }

// waitFor polls ok until it holds, for at most bound.
func waitFor(tb testing.TB, what string, bound time.Duration, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// term sends SIGTERM and waits for the node to exit (it drains first).
func (p *proc) term(tb testing.TB) {
	tb.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		tb.Fatalf("%s did not exit after SIGTERM; log:\n%s", p.name, p.tail())
	}
	p.cmd = nil
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// metric reads one gauge from the node's /metrics.
func (p *proc) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	res, err := http.Get(p.url() + "/metrics")
	if err != nil {
		tb.Fatalf("%s metrics: %v", p.name, err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v float64
		if _, err := fmt.Sscanf(sc.Text(), name+" %g", &v); err == nil {
			return v
		}
	}
	tb.Fatalf("%s: no metric %s", p.name, name)
	return 0
}

// recorder counts every event published on every room (PSUBSCRIBE), as the
// ground truth of what the cluster announced.
type recorder struct {
	mu     sync.Mutex
	events []recorded
	ps     *redis.PubSub
}

type recorded struct {
	at      time.Time
	channel string
	Version int64  `json:"version"`
	Event   string `json:"event"`
	UserID  string `json:"userId"`
}

func startRecorder(tb testing.TB, redisAddr, prefix string) *recorder {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	tb.Cleanup(func() { rdb.Close() })
	r := &recorder{ps: rdb.PSubscribe(context.Background(), prefix+":{*}:events")}
	if _, err := r.ps.Receive(context.Background()); err != nil {
		tb.Fatal(err)
	}
	go func() {
		for m := range r.ps.Channel(redis.WithChannelHealthCheckInterval(time.Second)) {
			var e recorded
			if json.Unmarshal([]byte(m.Payload), &e) != nil {
				continue
			}
			e.at, e.channel = time.Now(), m.Channel
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	tb.Cleanup(func() { r.ps.Close() })
	return r
}

// since returns the events recorded after t.
func (r *recorder) since(t time.Time) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, e := range r.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

func roomOfChannel(ch string) string {
	i := strings.Index(ch, "::")
	j := strings.LastIndex(ch, "}:events")
	if i < 0 || j < i {
		return ""
	}
	return ch[i+2 : j]
}

var _ = io.Discard
