package presence

import (
	"time"
	"unicode/utf8"
)

// Limits of identifiers (README: Presence rules).
const (
	MaxRoomIDBytes    = 256
	MaxUserIDBytes    = 256
	MaxSessionIDBytes = 256
	MaxOrgBytes       = 128
	MaxNameBytes      = 256
	MaxImageBytes     = 2048

	DefaultInterval = 10 * time.Second
	MinInterval     = time.Second
	MaxInterval     = 600 * time.Second

	// DefaultListLimit is the Convex presence component's default page:
	// apps built on it expect 104 members per list unless they ask.
	DefaultListLimit = 104
	MaxListLimit     = 1000
)

// ValidateRoomID checks a room id: 1–256 bytes of UTF-8, no control
// characters, no braces (they would break the Redis hash tag).
func ValidateRoomID(s string) error { return validateID("roomId", s, MaxRoomIDBytes, true) }

// ValidateUserID checks a user id: 1–256 bytes of UTF-8, no control characters.
func ValidateUserID(s string) error { return validateID("userId", s, MaxUserIDBytes, false) }

// ValidateSessionID checks a session id: 1–256 bytes of UTF-8, no control
// characters, no braces.
func ValidateSessionID(s string) error {
	return validateID("sessionId", s, MaxSessionIDBytes, true)
}

// ValidateOrg checks an org id: 1–128 bytes of [A-Za-z0-9._@-].
func ValidateOrg(s string) error {
	if len(s) == 0 || len(s) > MaxOrgBytes {
		return Errorf(EINVALID, "org must be 1-%d bytes", MaxOrgBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return Errorf(EINVALID, "org may contain only [A-Za-z0-9._@-]")
		}
	}
	return nil
}

// ValidateText checks an optional display string (name, image URL).
func ValidateText(field, s string, max int) error {
	if s == "" {
		return nil
	}
	return validateID(field, s, max, false)
}

func validateID(field, s string, max int, noBraces bool) error {
	if len(s) == 0 {
		return Errorf(EINVALID, "%s is required", field)
	}
	if len(s) > max {
		return Errorf(EINVALID, "%s must be at most %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s must be valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return Errorf(EINVALID, "%s must not contain control characters", field)
		}
		if invisible(r) {
			return Errorf(EINVALID, "%s must not contain invisible or bidirectional control characters (U+%04X)", field, r)
		}
		if noBraces && (r == '{' || r == '}') {
			return Errorf(EINVALID, "%s must not contain '{' or '}'", field)
		}
	}
	return nil
}

// ValidateInterval checks a heartbeat interval; zero means the default.
func ValidateInterval(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return DefaultInterval, nil
	}
	if d < MinInterval || d > MaxInterval {
		return 0, Errorf(EINVALID, "interval must be %d-%d ms", MinInterval.Milliseconds(), MaxInterval.Milliseconds())
	}
	return d, nil
}

// IntervalMillis turns an interval as a client sends it (milliseconds; nil
// when absent) into a duration: absent means the default, and anything
// outside MinInterval..MaxInterval, 0 included, is refused. An explicit 0 is
// an error, not the default, so that a client's mistake is not hidden.
func IntervalMillis(ms *int64) (time.Duration, error) {
	if ms == nil {
		return DefaultInterval, nil
	}
	if *ms < MinInterval.Milliseconds() || *ms > MaxInterval.Milliseconds() {
		return 0, Errorf(EINVALID, "interval must be %d-%d ms", MinInterval.Milliseconds(), MaxInterval.Milliseconds())
	}
	return time.Duration(*ms) * time.Millisecond, nil
}

// ValidateLimit checks a list limit; zero means the default.
func ValidateLimit(n int) (int, error) {
	if n == 0 {
		return DefaultListLimit, nil
	}
	if n < 1 || n > MaxListLimit {
		return 0, Errorf(EINVALID, "limit must be 1-%d", MaxListLimit)
	}
	return n, nil
}

// invisible reports the characters that make look-alike ids: bidirectional
// controls (an id that reads "bob" but is "b\u202eob") and invisible ones
// (zero-width space, word joiner, BOM, soft hyphen, Mongolian vowel
// separator). The zero-width (non-)joiners U+200C and U+200D are allowed:
// several scripts and emoji sequences need them.
func invisible(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069,
		r == 0x200E, r == 0x200F, r == 0x061C:
		return true
	case r == 0x200B, r == 0x2060, r == 0xFEFF, r == 0x00AD, r == 0x180E:
		return true
	}
	return false
}
