package presence

import "unicode/utf8"

// CheckJSONText refuses JSON text that is not I-JSON (RFC 7493) in its
// strings: invalid UTF-8 anywhere, or an escape of a lone UTF-16 surrogate
// (`"\ud800"`, or `"\udc00"` not preceded by a high surrogate). encoding/json
// would quietly turn both into U+FFFD, so that two different ids become one
// and raw invalid bytes could reach a WebSocket text frame (which a browser
// then refuses, closing the socket). Everything the node accepts passes here
// first; it says nothing about whether b is otherwise valid JSON.
func CheckJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return Errorf(EINVALID, "the JSON must be valid UTF-8")
	}
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(b) {
				return nil // truncated: the JSON decoder refuses it
			}
			i++
			if b[i] != 'u' {
				continue
			}
			r, ok := hex4(b, i+1)
			if !ok {
				continue // malformed escape: the JSON decoder refuses it
			}
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return errLoneSurrogate
			case r >= 0xD800 && r <= 0xDBFF:
				// Must be followed at once by \u and a low surrogate.
				if i+2 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
					return errLoneSurrogate
				}
				lo, ok := hex4(b, i+3)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return errLoneSurrogate
				}
				i += 6
			}
		}
	}
	return nil
}

var errLoneSurrogate = Errorf(EINVALID, "the JSON must not contain a lone UTF-16 surrogate escape")

// hex4 reads the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
