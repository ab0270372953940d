// Package netproxy is a TCP proxy that stands for a network link between two
// regions: it forwards bytes with a configurable one-way delay, and can cut
// the link (hold every byte, as a broken route does while TCP keeps
// retransmitting) and heal it (deliver what was held, in order), or reset it
// (close every connection). The region tests put it between a node and the
// Redis primary and on a replica's replication link; scripts/regions.sh runs
// it as `presencebench proxy`.
//
// It imports only the standard library.
package netproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards the connections it accepts to one upstream address.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	delay  time.Duration // one way
	cut    bool
	healed chan struct{} // closed when a cut ends
	reset  chan struct{} // closed by Reset: held bytes are dropped
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen starts a proxy on addr ("127.0.0.1:0" for a free port) to upstream.
func Listen(addr, upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}, healed: make(chan struct{}), reset: make(chan struct{})}
	close(p.healed)
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets the one-way delay of every byte from now on (a round trip
// through the proxy takes twice as long).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Cut stops the link: connections stay open, new ones are accepted, but no
// byte goes through until Heal; what is sent meanwhile is held.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut = true
		p.healed = make(chan struct{})
	}
}

// Heal ends a cut: the bytes held are delivered, in order.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.healed)
	}
}

// Reset closes every connection through the proxy (both sides see it
// closed); the proxy keeps accepting new ones.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	close(p.reset)
	p.reset = make(chan struct{})
}

// Close stops accepting, closes every connection and waits for the
// forwarding goroutines. Idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.cut {
		p.cut = false
		close(p.healed)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		reset := p.reset
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(u, c, reset)
		go p.pipe(c, u, reset)
	}
}

// chunk is bytes read at one moment, due at another.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe forwards src to dst: a reader stamps each chunk with its due time (now
// + the delay), a writer delivers it then, or after the cut that holds it.
// A Reset drops what a cut holds.
func (p *Proxy) pipe(dst, src net.Conn, reset <-chan struct{}) {
	defer p.wg.Done()
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
	deliver:
		for c := range q {
			if wait := time.Until(c.due); wait > 0 {
				time.Sleep(wait)
			}
			for {
				p.mu.Lock()
				cut, healed := p.cut, p.healed
				p.mu.Unlock()
				if !cut {
					break
				}
				select {
				case <-healed:
				case <-reset:
					break deliver
				}
			}
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		for range q { // drain after a failed write
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.delay
			p.mu.Unlock()
			q <- chunk{b: buf[:n], due: time.Now().Add(d)}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
