package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
)

// The heartbeat's hot path (POST /v1/heartbeat, the request a node serves
// most): its body is decoded by hand when it has the usual shape, and its
// answer is written by hand. Both give exactly what encoding/json gives;
// anything unusual goes through encoding/json itself.

const heartbeatPath = "/v1/heartbeat"

// serveHeartbeat serves POST /v1/heartbeat as Echo would (the route's
// context, the middlewares, the error handler), without routing it and
// without building its middleware chain again: Echo builds it per request,
// a closure per middleware.
func (s *Server) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	c := s.echo.AcquireContext()
	c.Reset(r, w)
	c.SetPath(heartbeatPath)
	if err := s.heartbeatChain(c); err != nil {
		s.echo.HTTPErrorHandler(err, c)
	}
	s.echo.ReleaseContext(c)
}

// heartbeatBody returns the request body, checked as readBody checks it.
// The copy bufferBody made is used as it is: it is valid until the handler
// returns, and decodeHeartbeat copies what it keeps.
func (s *Server) heartbeatBody(c echo.Context) ([]byte, error) {
	b, ok := bufferedBody(c.Request())
	if !ok {
		return s.readBody(c)
	}
	if err := s.checkBody(b); err != nil {
		return nil, err
	}
	return b, nil
}

// decodeHeartbeat decodes a heartbeat body (checked by checkBody) as
// unmarshalObject does, with the same errors.
func decodeHeartbeat(b []byte) (heartbeatRequest, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var req heartbeatRequest
		if ok := req.decodeFast(b); ok {
			return req, nil
		}
	}
	var req heartbeatRequest
	err := unmarshalObject(b, &req)
	return req, err
}

// unmarshalObject decodes a JSON object body (trimmed) into v; wrong types
// are EINVALID.
func unmarshalObject(b []byte, v any) error {
	if len(b) == 0 || b[0] != '{' {
		return presence.Errorf(presence.EINVALID, "the body must be a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return presence.Errorf(presence.EINVALID, "%s has the wrong type", te.Field)
		}
		return presence.Errorf(presence.EINVALID, "the body is not valid JSON")
	}
	return nil
}

// The fields decodeFast knows, in heartbeatRequest's JSON names.
const (
	hbRoomID = iota
	hbSessionID
	hbUserID
	hbName
	hbImage
	hbInterval
	hbFields
)

var hbFieldNames = [hbFields]string{"roomId", "sessionId", "userId", "name", "image", "interval"}

// decodeFast decodes the usual heartbeat: one JSON object (b, trimmed,
// starts with '{') whose keys are among roomId, sessionId, userId, name,
// image and interval, spelled exactly so and each at most once; strings
// without escapes; an interval that is an integer of at most 18 digits.
// Those are decoded as encoding/json decodes them (b is valid UTF-8:
// checkBody). Anything else (data, other keys, escapes, null, other
// spellings, any syntax error) returns false and is left to encoding/json,
// so that every rule (errors, duplicate keys, case-insensitive keys) stays
// encoding/json's own. The strings share one allocation.
func (req *heartbeatRequest) decodeFast(b []byte) bool {
	var span [hbFields][2]int // value offsets in b; end 0: absent
	var interval int64        // copied out: it escapes only when present
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == '}' {
		return i+1 == len(b)
	}
	for {
		key, end, ok := plainString(b, i)
		if !ok {
			return false
		}
		f := 0
		for f < hbFields && hbFieldNames[f] != string(key) {
			f++
		}
		if f == hbFields || span[f][1] != 0 {
			return false // another key, or a second time
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if f == hbInterval {
			if interval, end, ok = plainInt(b, i); !ok {
				return false
			}
			span[f] = [2]int{i, end}
		} else {
			if _, end, ok = plainString(b, i); !ok {
				return false
			}
			span[f] = [2]int{i + 1, end - 1}
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			if i+1 != len(b) {
				return false
			}
			break
		}
		if b[i] != ',' {
			return false
		}
		i = skipSpace(b, i+1)
	}
	var all string
	for f := range hbInterval {
		if span[f][1] > span[f][0] {
			all = string(b) // one copy for every string
			break
		}
	}
	str := func(f int) string {
		if span[f][1] <= span[f][0] {
			return "" // absent, or ""
		}
		return all[span[f][0]:span[f][1]]
	}
	req.RoomID, req.SessionID, req.UserID, req.Name, req.Image = str(hbRoomID), str(hbSessionID), str(hbUserID), str(hbName), str(hbImage)
	if span[hbInterval][1] != 0 {
		req.Interval = new(int64)
		*req.Interval = interval
	}
	return true
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i] if it has no escape and no
// control character: its contents and the index after its closing quote.
func plainString(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// plainInt reads the JSON number at b[i] if it is an integer (-?(0|[1-9]
// [0-9]*)) of at most 18 digits, ended by whitespace, ',' or '}'.
func plainInt(b []byte, i int) (n int64, end int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && b[start] == '0') || i >= len(b) {
		return 0, 0, false
	}
	if c := b[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ',' && c != '}' {
		return 0, 0, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}

// answerBuffers hold heartbeat answers while they are written.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// jsonContentType is the Content-Type header value c.JSON sets, shared by
// every answer (net/http only reads it).
var jsonContentType = []string{echo.MIMEApplicationJSON}

// writeHeartbeat answers a heartbeat with the bytes c.JSON(200, out) writes
// (encoding/json's, with its newline), built by hand. Tokens are base64url,
// which encoding/json writes as they are; c.JSON itself writes an answer
// that might differ (a token of other characters, ?pretty, Echo's Debug).
func (s *Server) writeHeartbeat(c echo.Context, out *presence.HeartbeatOutput) error {
	if s.echo.Debug || c.Request().URL.RawQuery != "" || !base64URL(out.RoomToken) || !base64URL(out.SessionToken) {
		return c.JSON(http.StatusOK, out)
	}
	bp := answerBuffers.Get().(*[]byte)
	b := append((*bp)[:0], `{"roomToken":"`...)
	b = append(b, out.RoomToken...)
	b = append(b, `","sessionToken":"`...)
	b = append(b, out.SessionToken...)
	b = append(b, `","interval":`...)
	b = strconv.AppendInt(b, out.Interval, 10)
	b = append(b, "}\n"...)
	h := c.Response().Header()
	if h.Get(echo.HeaderContentType) == "" {
		h[echo.HeaderContentType] = jsonContentType
	}
	err := c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
	*bp = b
	answerBuffers.Put(bp)
	return err
}

// base64URL reports whether s has only base64url characters.
func base64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if !base64URLChars[s[i]] {
			return false
		}
	}
	return true
}

var base64URLChars = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()
