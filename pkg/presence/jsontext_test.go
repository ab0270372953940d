package presence_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/presence"
)

func TestCheckJSONText(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"data":"plain"}`, true},
		{`{"data":"caf\u00e9 \ud83d\ude00 😀"}`, true},
		{`{"data":"\\ud800"}`, true}, // an escaped backslash, then text
		{`{"data":"\\\ud83d\ude00"}`, true},
		{`{"a":"\ufffd"}`, true},
		{`{"roomId":"r","sessionId":"m1","data":"` + "\xff\xfe" + `"}`, false},
		{`{"data":"` + "\xc3\x28" + `"}`, false},
		{`{"data":"` + "\xed\xa0\x80" + `"}`, false}, // a surrogate encoded in UTF-8 (CESU)
		{`{"sub":"bob\ud800"}`, false},
		{`{"sub":"bob\udfff"}`, false},
		{`{"sub":"bob\uD800x"}`, false},
		{`{"sub":"bob\ud800\u0041"}`, false},
		{`{"sub":"bob\ud800\ud800"}`, false},
		{`{"sub":"\udc00\ud800"}`, false},
		{`{"sub":"bob\ud800`, false}, // truncated after a high surrogate
		{`["\uDBFF\uDFFF"]`, true},
	} {
		err := presence.CheckJSONText([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("CheckJSONText(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && presence.ErrorCode(err) != presence.EINVALID {
			t.Errorf("CheckJSONText(%q): code %s", tc.in, presence.ErrorCode(err))
		}
	}
}

var surrogateEscape = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

// FuzzCheckJSONText: invalid UTF-8 is always refused; text without
// anything that looks like a surrogate escape is always accepted; and
// accepted JSON decodes without replacement characters that were not in
// the text, so two different texts never decode to the same ids.
func FuzzCheckJSONText(f *testing.F) {
	f.Add([]byte(`{"sub":"bob\ud800"}`))
	f.Add([]byte(`{"data":"\\ud800"}`))
	f.Add([]byte(`["\ud83d\ude00"]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := presence.CheckJSONText(b)
		switch {
		case !utf8.Valid(b) && err == nil:
			t.Fatalf("accepted invalid UTF-8 %q", b)
		case utf8.Valid(b) && !surrogateEscape.Match(b) && err != nil:
			t.Fatalf("refused %q: %v", b, err)
		}
		if err != nil || !json.Valid(b) {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return // valid JSON that Go cannot hold (a number like 1e1000)
		}
		raw := strings.ToLower(string(b))
		if !strings.Contains(raw, "\ufffd") && !strings.Contains(raw, `\ufffd`) && strings.Contains(dump(v), "\ufffd") {
			t.Fatalf("accepted %q, which decodes with a replacement character", b)
		}
	})
}

// dump concatenates every string of a decoded JSON value (keys too).
func dump(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		var sb strings.Builder
		for _, e := range v {
			sb.WriteString(dump(e))
		}
		return sb.String()
	case map[string]any:
		var sb strings.Builder
		for k, e := range v {
			sb.WriteString(k)
			sb.WriteString(dump(e))
		}
		return sb.String()
	}
	return ""
}
