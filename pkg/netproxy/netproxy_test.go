package netproxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/netproxy"
)

// echo starts a line echo server on a free loopback port.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func open(t *testing.T, upstream string) (*netproxy.Proxy, net.Conn, *bufio.Reader) {
	t.Helper()
	p, err := netproxy.Listen("127.0.0.1:0", upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, c, bufio.NewReader(c)
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("read %q %v, want %q", got, err, line)
	}
	return time.Since(start)
}

// TestDelay: a round trip through the proxy takes twice the one-way delay.
func TestDelay(t *testing.T) {
	p, c, r := open(t, echo(t))
	roundTrip(t, c, r, "warm")
	p.SetDelay(50 * time.Millisecond)
	if d := roundTrip(t, c, r, "slow"); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("round trip %v, want about 100ms", d)
	}
}

// TestCutHeal: a cut holds the bytes; the heal delivers them, in order.
func TestCutHeal(t *testing.T) {
	p, c, r := open(t, echo(t))
	roundTrip(t, c, r, "warm")
	p.Cut()
	c.Write([]byte("a\nb\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a byte went through the cut")
	}
	p.Heal()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"a\n", "b\n"} {
		if got, err := r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("after the heal: %q %v, want %q", got, err, want)
		}
	}
}

// TestReset: a reset closes the connections, also during a cut; new ones
// work.
func TestReset(t *testing.T) {
	up := echo(t)
	p, c, r := open(t, up)
	roundTrip(t, c, r, "warm")
	p.Cut()
	c.Write([]byte("held\n"))
	p.Reset()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("the connection survived the reset")
	}
	p.Heal()
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	roundTrip(t, c2, bufio.NewReader(c2), "again")
}

// TestHeldAfterClose: bytes held in a cut reach the upstream after the heal
// even when the sender closed its connection meanwhile, as TCP delivers
// what was sent before a FIN.
func TestHeldAfterClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	p, c, _ := open(t, ln.Addr().String())
	p.Cut()
	c.Write([]byte("late"))
	c.Close()
	p.Heal()
	select {
	case s := <-got:
		if s != "late" {
			t.Fatalf("upstream got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered")
	}
}
