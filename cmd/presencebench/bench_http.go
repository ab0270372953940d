package main

// bench_http.go: a minimal HTTP/1.1 keep-alive client for load generation.
// The load generator shares the machine's cores with the node and Redis it
// measures, so each request must cost it as little as possible: requests
// are built once as bytes, and the response is read into a reused buffer
// (status, Content-Length or chunked body, ETag, Connection: close).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// endpoint is a node's base URL, split for the raw client.
type endpoint struct {
	url  string // as given, without a trailing slash
	addr string // host:port to dial
	host string // Host header
	base string // path prefix, without a trailing slash
}

func parseEndpoint(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, err
	}
	if u.Scheme != "http" {
		return endpoint{}, errors.New("must be http://host:port (the load generator speaks plain HTTP/1.1 and ws://)")
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, errors.New("must be http://host:port[/path]")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return endpoint{url: strings.TrimRight(raw, "/"), addr: addr, host: u.Host, base: strings.TrimRight(u.EscapedPath(), "/")}, nil
}

func mustEndpoint(raw string) endpoint {
	ep, err := parseEndpoint(raw)
	if err != nil {
		panic(err) // checked when the flags were parsed
	}
	return ep
}

// buildRequest renders one request. headers are extra "Name: value" lines.
func buildRequest(ep endpoint, token, method, path string, body []byte, headers ...string) []byte {
	var b bytes.Buffer
	b.Grow(160 + len(body) + len(token))
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(ep.base)
	b.WriteString(path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(ep.host)
	b.WriteString("\r\nUser-Agent: presencebench\r\n")
	if token != "" {
		b.WriteString("Authorization: Bearer ")
		b.WriteString(token)
		b.WriteString("\r\n")
	}
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	if body != nil || method == "POST" || method == "PUT" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: ")
		b.WriteString(strconv.Itoa(len(body)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// hclient is one keep-alive connection to a node (not safe for concurrent
// use: each worker has its own).
type hclient struct {
	ep      endpoint
	timeout time.Duration
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	body    []byte
}

func newHClient(ep endpoint, timeout time.Duration) *hclient {
	d := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	return &hclient{ep: ep, timeout: timeout, dial: d.DialContext}
}

// hresp is a response; body is valid until the next request.
type hresp struct {
	status int
	body   []byte
	etag   string
}

// statusError is an answer with an unexpected status.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.status, e.body)
}

// expect returns a *statusError unless the status is want.
func (r hresp) expect(want int) error {
	if r.status == want {
		return nil
	}
	body := string(r.body)
	if len(body) > 200 {
		body = body[:200]
	}
	return &statusError{status: r.status, body: strings.TrimSpace(body)}
}

func (c *hclient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends a request built by buildRequest and reads the answer. A network
// error closes the connection (the next request dials again); it is not
// retried, so a benchmark never sends a request twice.
func (c *hclient) do(req []byte) (hresp, error) {
	if c.conn == nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		conn, err := c.dial(ctx, "tcp", c.ep.addr)
		cancel()
		if err != nil {
			return hresp{}, fmt.Errorf("dial %s: %w", c.ep.addr, err)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
			c.bw = bufio.NewWriterSize(conn, 4<<10)
		} else {
			c.br.Reset(conn)
			c.bw.Reset(conn)
		}
	}
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.bw.Write(req); err != nil {
		c.close()
		return hresp{}, fmt.Errorf("write: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		c.close()
		return hresp{}, fmt.Errorf("write: %w", err)
	}
	res, closeAfter, err := c.read(bytes.HasPrefix(req, []byte("HEAD ")))
	if err != nil {
		c.close()
		return hresp{}, fmt.Errorf("read: %w", err)
	}
	if closeAfter {
		c.close()
	}
	return res, nil
}

// read reads one response.
func (c *hclient) read(head bool) (hresp, bool, error) {
	var res hresp
	line, err := c.line()
	if err != nil {
		return res, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return res, false, fmt.Errorf("bad status line %q", line)
	}
	res.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return res, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closeAfter := -1, false, bytes.HasPrefix(line, []byte("HTTP/1.0"))
	for {
		line, err := c.line()
		if err != nil {
			return res, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return res, false, fmt.Errorf("bad header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil || length < 0 {
				return res, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = closeAfter || bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("ETag")):
			res.etag = string(value)
		}
	}
	c.body = c.body[:0]
	switch {
	case head || res.status == 204 || res.status == 304 || res.status/100 == 1:
	case chunked:
		for {
			line, err := c.line()
			if err != nil {
				return res, false, err
			}
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
			if err != nil || n < 0 {
				return res, false, fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				for { // trailers
					l, err := c.line()
					if err != nil {
						return res, false, err
					}
					if len(l) == 0 {
						break
					}
				}
				break
			}
			if err := c.readBody(int(n)); err != nil {
				return res, false, err
			}
			if l, err := c.line(); err != nil || len(l) != 0 {
				return res, false, fmt.Errorf("bad chunk end")
			}
		}
	case length >= 0:
		if err := c.readBody(length); err != nil {
			return res, false, err
		}
	default:
		// No length: the body runs to the end of the connection.
		b, err := io.ReadAll(c.br)
		if err != nil {
			return res, false, err
		}
		c.body = append(c.body, b...)
		closeAfter = true
	}
	res.body = c.body
	return res, closeAfter, nil
}

func (c *hclient) readBody(n int) error {
	start := len(c.body)
	if cap(c.body)-start < n {
		nb := make([]byte, start, start+n+start)
		copy(nb, c.body)
		c.body = nb
	}
	c.body = c.body[:start+n]
	_, err := io.ReadFull(c.br, c.body[start:])
	return err
}

// line reads one CRLF-terminated line, without the CRLF.
func (c *hclient) line() ([]byte, error) {
	l, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("header line too long")
		}
		return nil, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

// jsonString extracts the string value of "key" from a small JSON object
// the node wrote (tokens are base64url: no escapes).
func jsonString(body []byte, key string) string {
	k := []byte(`"` + key + `":"`)
	i := bytes.Index(body, k)
	if i < 0 {
		return ""
	}
	rest := body[i+len(k):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// heartbeatBody is the JSON of POST /v1/heartbeat.
func heartbeatBody(room, session, user string, interval time.Duration) []byte {
	return []byte(`{"roomId":` + strconv.Quote(room) + `,"sessionId":` + strconv.Quote(session) +
		`,"userId":` + strconv.Quote(user) + `,"interval":` + strconv.FormatInt(interval.Milliseconds(), 10) + `}`)
}
