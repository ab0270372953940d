package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/auth/authtest"
	"github.com/presencecluster/presence/pkg/presence"
)

// fuzzJWTSecret signs the valid JWTs of testdata/fuzz/FuzzVerify.
var fuzzJWTSecret = []byte("fuzz-jwt-secret-0123456789abcdef-32b")

// lenientB64 decodes base64 in any of its spellings (std or url alphabet,
// padded or not), as JWT libraries tend to.
func lenientB64(s string) ([]byte, error) {
	s = strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimRight(s, "="))
	return base64.RawURLEncoding.DecodeString(s)
}

// signedWithSecret checks, without the jwx library, that raw is an HS256
// JWT in its one canonical spelling whose signature is
// HMAC-SHA256(secret, header.payload) over the segments as sent.
func signedWithSecret(raw string, secret []byte) (string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "not three parts", false
	}
	var segs [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != p {
			return "a segment is not canonical base64url", false
		}
		segs[i] = b
	}
	var hdr map[string]any
	if err := json.Unmarshal(segs[0], &hdr); err != nil || hdr["alg"] != "HS256" {
		return "the header is not one JSON object with alg HS256", false
	}
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(segs[2], h.Sum(nil)) {
		return "the signature is not HMAC(secret) of the segments as sent", false
	}
	return "", true
}

// fuzzClaims and fuzzHeader are the claims and the header of a token that
// FuzzVerify accepts.
const (
	fuzzClaims = `{"sub":"ada","org_id":"acme","exp":4102444800}`
	fuzzHeader = `{"alg":"HS256","typ":"JWT"}`
)

// signSegments returns header.payload.signature, signed HS256 with the
// fuzz secret over the two segments as given.
func signSegments(header, payload string) string {
	h := hmac.New(sha256.New, fuzzJWTSecret)
	h.Write([]byte(header + "." + payload))
	return header + "." + payload + "." + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// FuzzVerify: Verify never panics on any string, refuses with
// EUNAUTHORIZED, and accepts only HS256 tokens signed with the configured
// secret that carry an unexpired exp and a valid sub and org, whose header
// and claims JSON decode without loss (no invalid UTF-8, no lone surrogate
// escape: two different subs never become one user) and whose header has no
// crit member.
//
// A mutated token fails the signature check before its claims are read, so
// each input is tried four ways: as a token; its first two segments signed
// here; as the claims JSON of a token signed here; as the header JSON of a
// token signed here.
func FuzzVerify(f *testing.F) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{
		HS256Secret: fuzzJWTSecret,
		AdminToken:  "fuzz-admin-token",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	good := authtest.HS256(f, fuzzJWTSecret, map[string]any{"sub": "ada", "org_id": "acme", "rooms": []string{"doc-*"}})
	f.Add(good)
	f.Add(authtest.HS256(f, []byte("another-secret-another-secret-0123"), map[string]any{"sub": "ada"}))
	f.Add(good[:len(good)-4])
	f.Add(good + strings.Repeat("A", auth.MaxTokenBytes))
	f.Add(fuzzClaims)
	f.Add(`{"sub":"caf\u00e9 \ud83d\ude00","name":"Ad\\ua","exp":4102444800}`)
	f.Add(fuzzHeader)
	b64 := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, in string) {
		checkVerify(t, v, in)
		if parts := strings.Split(in, "."); len(parts) == 3 {
			checkVerify(t, v, signSegments(parts[0], parts[1]))
		}
		checkVerify(t, v, signSegments(b64([]byte(fuzzHeader)), b64([]byte(in))))
		checkVerify(t, v, signSegments(b64([]byte(in)), b64([]byte(fuzzClaims))))
	})
}

// checkVerify checks what Verify makes of raw (see FuzzVerify).
func checkVerify(t *testing.T, v *auth.Verifier, raw string) {
	start := time.Now()
	id, err := v.Verify(context.Background(), raw)
	if err != nil {
		if id != nil {
			t.Fatalf("Verify(%q) returned an identity and an error", raw)
		}
		if code := presence.ErrorCode(err); code != presence.EUNAUTHORIZED {
			t.Fatalf("Verify(%q): code %q (%v)", raw, code, err)
		}
		if !strings.HasPrefix(presence.ErrorMessage(err), "invalid token: ") {
			t.Fatalf("Verify(%q): message %q", raw, presence.ErrorMessage(err))
		}
		return
	}
	if why, ok := signedWithSecret(raw, fuzzJWTSecret); !ok {
		t.Fatalf("Verify accepted %q (%+v): %s", raw, id, why)
	}
	if len(raw) > auth.MaxTokenBytes {
		t.Fatalf("Verify accepted a %d-byte token", len(raw))
	}
	if !id.Verified || id.Admin || presence.ValidateUserID(id.UserID) != nil || presence.ValidateOrg(id.Org) != nil {
		t.Fatalf("Verify(%q) = %+v", raw, id)
	}
	for _, s := range []string{id.UserID, id.Org, id.Name, id.Image} {
		if !utf8.ValidString(s) {
			t.Fatalf("Verify(%q) = %+v: not UTF-8", raw, id)
		}
	}
	parts := strings.Split(raw, ".")
	hb, _ := lenientB64(parts[0])
	pb, _ := lenientB64(parts[1])
	// Nothing was replaced by U+FFFD while decoding: a replacement would
	// make two different subs one user.
	if !losslessJSONText(hb) || !losslessJSONText(pb) {
		t.Fatalf("Verify accepted %q (%+v): header %q, claims %q hold invalid UTF-8 or a lone surrogate escape", raw, id, hb, pb)
	}
	// RFC 7515 §4.1.11: no crit extension is understood.
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hb, &hdr); err != nil {
		t.Fatalf("Verify accepted %q with header %q (%v)", raw, hb, err)
	}
	if _, crit := hdr["crit"]; crit {
		t.Fatalf("Verify accepted %q with header %q (%v)", raw, hb, err)
	}
	// exp is required and checked (30 s leeway).
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if err := json.Unmarshal(pb, &claims); err != nil || claims.Exp == nil {
		t.Fatalf("Verify accepted %q without a numeric exp (%v)", raw, err)
	}
	if exp := time.Unix(int64(*claims.Exp), 0); start.After(exp.Add(auth.DefaultLeeway + time.Second)) {
		t.Fatalf("Verify accepted %q, expired at %v", raw, exp)
	}
	if v.IsAdminToken(raw) {
		t.Fatalf("a JWT is the admin token")
	}
}

// jsonEscape matches one escape of JSON text, \uXXXX (hex in group 1) or a
// backslash and any other character, so that "\\u" is an escaped
// backslash followed by the letter u.
var jsonEscape = regexp.MustCompile(`\\(?:u([0-9A-Fa-f]{4})|[\s\S])`)

// losslessJSONText reports whether the JSON text b (valid JSON) decodes
// without anything replaced by U+FFFD: it is valid UTF-8 and every
// surrogate escape is a high one followed at once by a low one. This is a
// second, independent spelling of presence.CheckJSONText.
func losslessJSONText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	pairEnd := -1 // where the low half must start, after a high surrogate
	for _, m := range jsonEscape.FindAllSubmatchIndex(b, -1) {
		r := rune(-1)
		if m[2] >= 0 {
			n, _ := strconv.ParseUint(string(b[m[2]:m[3]]), 16, 32)
			r = rune(n)
		}
		isLow := r >= 0xDC00 && r <= 0xDFFF
		if pairEnd >= 0 {
			if m[0] != pairEnd || !isLow {
				return false
			}
			pairEnd = -1
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			pairEnd = m[1]
		case isLow:
			return false
		}
	}
	return pairEnd < 0
}

// TestOneSpellingPerToken: regression for what FuzzVerify found: jwx
// verifies the signature over what it re-encodes, so a signed token spelled
// otherwise (line breaks, the std alphabet, other unused trailing bits, bytes
// after the header's JSON object) used to pass. Only the canonical spelling
// may.
func TestOneSpellingPerToken(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: fuzzJWTSecret})
	if err != nil {
		t.Fatal(err)
	}
	good := authtest.HS256(t, fuzzJWTSecret, map[string]any{"sub": "ada?>~", "org_id": "acme"})
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("the canonical token: %v", err)
	}
	parts := strings.Split(good, ".")
	sign := func(header, payload string) string {
		h := hmac.New(sha256.New, fuzzJWTSecret)
		h.Write([]byte(header + "." + payload))
		return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	}
	b64 := base64.RawURLEncoding.EncodeToString
	// A header with a second JSON object after the first, signed the way
	// jwx checks it (over the first object only).
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	twoObjects := b64(append(hb, []byte(` {"alg":"none"}`)...)) + "." + parts[1] + "." + sign(parts[0], parts[1])
	lastBits := func(s string) string { // flip an unused low bit of the last character
		b, _ := base64.RawURLEncoding.DecodeString(s)
		for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
			alt := s[:len(s)-1] + string(c)
			if alt == s {
				continue
			}
			if d, err := base64.RawURLEncoding.DecodeString(alt); err == nil && string(d) == string(b) {
				return alt
			}
		}
		return s + "A"
	}
	for name, raw := range map[string]string{
		"CR inside":             parts[0] + ".\r" + parts[1] + "." + parts[2],
		"LF at the end":         good + "\n",
		"std alphabet":          strings.NewReplacer("-", "+", "_", "/").Replace(good),
		"padding":               parts[0] + "=." + parts[1] + "." + parts[2],
		"other trailing bits":   parts[0] + "." + parts[1] + "." + lastBits(parts[2]),
		"two header objects":    twoObjects,
		"payload trailing bits": parts[0] + "." + lastBits(parts[1]) + "." + parts[2],
	} {
		if raw == good {
			continue
		}
		if _, err := v.Verify(context.Background(), raw); err == nil {
			t.Errorf("%s: accepted %q", name, raw)
		}
	}
}
