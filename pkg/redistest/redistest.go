// Package redistest starts real redis-server processes on free loopback
// ports for tests, and stops them when the test ends. It never mocks Redis.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process started by a test.
type Server struct {
	Port int
	args []string
	cmd  *exec.Cmd
	dir  string
}

// Start starts a redis-server on a free loopback port; it is stopped (by its
// pid) when the test ends. extra are additional redis-server arguments.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatal("redis-server not found: install it (apt-get install -y redis-server); tests run against a real Redis")
	}
	s := &Server{Port: FreePort(tb), dir: tb.TempDir()}
	s.args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no"}, extra...)
	s.start(tb, bin)
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start(tb testing.TB, bin string) {
	tb.Helper()
	args := append([]string{"--port", strconv.Itoa(s.Port)}, s.args...)
	cmd := exec.Command(bin, args...)
	out, err := os.Create(fmt.Sprintf("%s/redis-%d.log", s.dir, time.Now().UnixNano()))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			r := bufio.NewReader(c)
			fmt.Fprint(c, "PING\r\n")
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := r.ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			tb.Fatalf("redis-server on %s did not start (log in %s)", s.Addr(), s.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Stop kills the server (by its pid) and waits for it. Idempotent.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart kills the server and starts a new one on the same port, with all
// data lost (nothing is persisted).
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	for i := 0; ; i++ {
		// The port may linger for a moment after the kill.
		l, err := net.Listen("tcp", s.Addr())
		if err == nil {
			l.Close()
			break
		}
		if i > 100 {
			tb.Fatalf("port %d still busy: %v", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.start(tb, bin)
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Errors is how many error replies starting with code (LATE, NOSCRIPT,
// ...) the server sent since it started (INFO errorstats).
func (s *Server) Errors(tb testing.TB, code string) int {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	info, err := c.Info(context.Background(), "errorstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_"+code+":count="); ok {
			n, _ := strconv.Atoi(rest)
			return n
		}
	}
	return 0
}

// FlushAll empties the server.
func (s *Server) FlushAll(tb testing.TB) {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatal(err)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var prefixSeq atomic.Int64

// UniquePrefix returns a key prefix of its own for a test, so tests can share
// one server and run in parallel.
func UniquePrefix(tb testing.TB) string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), prefixSeq.Add(1))
}
