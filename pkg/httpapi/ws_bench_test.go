package httpapi_test

// BenchmarkIdleSockets: what one idle WebSocket with one joined room costs a
// node, in memory: b.N sockets are opened (a join each, rooms of 10) and
// held; the growth of the heap in use and of the goroutine stacks, after a
// GC, is reported per socket. The clients are bare TCP connections that
// speak just enough WebSocket (a handshake, one masked frame), so nearly
// all of the growth is the server's.
//
//	go test -run XXX -bench IdleSockets -benchtime 5000x ./pkg/httpapi
//	PRESENCE_BENCH_HEAPPROFILE=/tmp/heap.out go test -run XXX -bench 'IdleSockets/queue=default' -benchtime 5000x ./pkg/httpapi
//	go tool pprof -sample_index=inuse_space -top /tmp/heap.out
//
// (Open files: two per socket in this one process.)

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
)

// realtimeBenchServer is a node with WebSockets on its own redis-server;
// queue is Config.WSQueue (0: the default, 256). It returns the node's URL.
func realtimeBenchServer(b *testing.B, queue int) string {
	b.Helper()
	return httpapitest.Start(b, httpapitest.Options{Quiet: true, Metrics: true, Queue: queue, PingInterval: 15 * time.Second}).URL
}

// rawJoin opens a WebSocket with a bare TCP connection and joins a room,
// returning once the "joined" reply arrived.
func rawJoin(addr, room, user string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 4096)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		c.Close()
		return nil, fmt.Errorf("handshake: %q %v", status, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if l == "\r\n" {
			break
		}
	}
	msg := fmt.Sprintf(`{"type":"join","id":1,"roomId":%q,"sessionId":"s-%s","userId":%q}`, room, user, user)
	frame := []byte{0x81, 0x80 | 126, 0, 0, 0, 0, 0, 0} // text, masked (key 0), 16-bit length
	binary.BigEndian.PutUint16(frame[2:], uint16(len(msg)))
	if _, err := c.Write(append(frame, msg...)); err != nil {
		c.Close()
		return nil, err
	}
	for { // frames until the reply
		h := make([]byte, 2)
		if _, err := io.ReadFull(br, h); err != nil {
			c.Close()
			return nil, err
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			io.ReadFull(br, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(br, l[:])
			n = int(binary.BigEndian.Uint64(l[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			c.Close()
			return nil, err
		}
		if bytes.Contains(payload, []byte(`"type":"joined"`)) {
			break
		}
		if bytes.Contains(payload, []byte(`"type":"error"`)) {
			c.Close()
			return nil, fmt.Errorf("join: %s", payload)
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// BenchmarkIdleSockets runs with the default event queue (256 events per
// socket, allocated when the socket opens) and, for comparison, with 16.
func BenchmarkIdleSockets(b *testing.B) {
	for _, q := range []int{0, 16} {
		name := "queue=default"
		if q > 0 {
			name = fmt.Sprint("queue=", q)
		}
		b.Run(name, func(b *testing.B) { benchIdleSockets(b, q) })
	}
}

func benchIdleSockets(b *testing.B, queue int) {
	hs := realtimeBenchServer(b, queue)
	addr := strings.TrimPrefix(hs, "http://")
	if _, err := rawJoin(addr, "warm-up", "w"); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := rawJoin(addr, fmt.Sprint("room-", i/10), fmt.Sprint("u", i))
		if err != nil {
			b.Fatalf("socket %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	b.StopTimer()
	time.Sleep(200 * time.Millisecond) // the last joins' events
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := float64(b.N)
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/socket")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/socket")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/socket")
	if path := os.Getenv("PRESENCE_BENCH_HEAPPROFILE"); path != "" && queue == 0 {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
