package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

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

// FuzzVerify: Verify never panics on any string, refuses with
// EUNAUTHORIZED, and accepts only HS256 tokens signed with the configured
// secret that carry an unexpired exp and a valid sub and org.
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
	f.Fuzz(func(t *testing.T, raw string) {
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
		// exp is required and checked (30 s leeway).
		parts := strings.Split(raw, ".")
		pb, _ := lenientB64(parts[1])
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
	})
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
