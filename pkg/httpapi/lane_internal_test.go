package httpapi

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// FuzzLaneParse: whatever request the lane takes, net/http reads the same
// way (method, path, Host, headers, body, length), and would not refuse.
func FuzzLaneParse(f *testing.F) {
	body := `{"roomId":"r","sessionId":"s","userId":"u"}`
	head := "POST /v1/heartbeat HTTP/1.1\r\nHost: node.example:8080\r\nContent-Type: application/json\r\nContent-Length: 44\r\n"
	for _, s := range []string{
		head + "\r\n" + body,
		head + "Origin: https://a.example\r\nAuthorization: Bearer x.y.z\r\n\r\n" + body,
		head + "connection: close\r\n\r\n" + body + head + "\r\n" + body,
		head + "X-A:  padded \t\r\n\r\n" + body,
		head + "X-A: 1\r\n 2\r\n\r\n" + body,
		head + "Host: other\r\n\r\n" + body,
		strings.Replace(head, "Host: node.example:8080", "Host: a b", 1) + "\r\n" + body,
		strings.Replace(head, "44", "044", 1) + "\r\n" + body,
		head + "X-\xff: 1\r\n\r\n" + body,
		head + "X-A: \x01\r\n\r\n" + body,
	} {
		f.Add([]byte(s))
	}
	l := &Lane{s: &Server{cfg: Config{MaxBodyBytes: 64 << 10}}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > laneBufSize {
			return
		}
		lc := &laneConn{l: l, st: new(laneState)}
		lc.w = copy(lc.st.buf[:], raw)
		n, ok := lc.parse()
		if !ok {
			return
		}
		br := bufio.NewReader(bytes.NewReader(raw))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("the lane took %q, net/http refuses it: %v", raw, err)
		}
		got, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("net/http body of %q: %v", raw, err)
		}
		if consumed := len(raw) - br.Buffered(); consumed != n {
			t.Errorf("lane request length %d, net/http %d", n, consumed)
		}
		if req.Method != http.MethodPost || req.URL.Path != heartbeatPath || req.URL.RawQuery != "" || req.Proto != "HTTP/1.1" {
			t.Errorf("net/http read %s %s %s", req.Method, req.URL, req.Proto)
		}
		if req.Host != lc.st.req.Host || !validHost(req.Host) {
			t.Errorf("Host: lane %q, net/http %q", lc.st.req.Host, req.Host)
		}
		if !bytes.Equal(got, lc.st.body.b) || req.ContentLength != int64(len(got)) {
			t.Errorf("body: lane %q, net/http %q (length %d)", lc.st.body.b, got, req.ContentLength)
		}
		if len(req.Header) != len(lc.st.req.Header) {
			t.Errorf("headers: lane %q, net/http %q", lc.st.req.Header, req.Header)
		}
		for k, v := range req.Header {
			if w := lc.st.req.Header[k]; len(w) != len(v) || len(v) != 1 || w[0] != v[0] {
				t.Errorf("header %s: lane %q, net/http %q", k, w, v)
			}
		}
	})
}

// TestLaneHandoffRawConn: a connection handed to net/http gives its raw
// socket (to the WebSocket idle waiter) only once the bytes the lane had
// read were read back.
func TestLaneHandoffRawConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Write([]byte("rest"))
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	h := &laneHandoff{Conn: c, pending: []byte("GET / HTTP/1.1\r\n")}
	if _, err := h.SyscallConn(); err == nil {
		t.Fatal("raw connection given while the lane still holds bytes")
	}
	buf := make([]byte, laneBufSize)
	n, err := h.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("first read %q %v", buf[:n], err)
	}
	if _, err := h.SyscallConn(); err != nil {
		t.Fatalf("raw connection after the pending bytes were read: %v", err)
	}
	n, err = io.ReadAtLeast(h, buf, 4)
	if err != nil || string(buf[:n]) != "rest" {
		t.Fatalf("then the socket: %q %v", buf[:n], err)
	}
}
