package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/auth/authtest"
	"github.com/presencecluster/presence/pkg/presence"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	v, err := auth.NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func mustVerify(t *testing.T, v *auth.Verifier, token string) *presence.Identity {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id == nil {
		t.Fatal("Verify returned a nil identity and no error")
	}
	return id
}

func mustRefuse(t *testing.T, v *auth.Verifier, token string) *presence.Error {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if err == nil {
		t.Fatalf("Verify accepted the token: %+v", id)
	}
	if id != nil {
		t.Errorf("Verify returned an identity with its error: %+v", id)
	}
	var pe *presence.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *presence.Error", err, err)
	}
	if pe.Code != presence.EUNAUTHORIZED || !strings.HasPrefix(pe.Message, "invalid token: ") {
		t.Fatalf("error = %q/%q, want %q/\"invalid token: ...\"", pe.Code, pe.Message, presence.EUNAUTHORIZED)
	}
	return pe
}

// signJWS signs payload as is (no claim defaults) with the given algorithm.
func signJWS(t *testing.T, alg jwa.SignatureAlgorithm, key any, payload string) string {
	t.Helper()
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		t.Fatal(err)
	}
	tok, err := jws.Sign([]byte(payload), jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(tok)
}

func writeSet(t *testing.T, set jwk.Set) string {
	t.Helper()
	buf, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(name, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func newECKey(t *testing.T, kid string) (jwk.Key, jwk.Set) {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := priv.Set(jwk.KeyIDKey, kid); err != nil { // no "alg": ES256 is implied
		t.Fatal(err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	return priv, set
}

func mergeSets(t *testing.T, sets ...jwk.Set) jwk.Set {
	t.Helper()
	out := jwk.NewSet()
	for _, s := range sets {
		for i := 0; i < s.Len(); i++ {
			k, _ := s.Key(i)
			if err := out.AddKey(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// jwksServer serves a key set that the test can swap, and counts requests.
type jwksServer struct {
	*httptest.Server
	body atomic.Pointer[[]byte]
	hits atomic.Int64
}

func newJWKSServer(t *testing.T, set jwk.Set) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.serve(t, set)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(t *testing.T, set jwk.Set) {
	t.Helper()
	buf, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.body.Store(&buf)
}

func TestVerifyHS256(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret})
	tests := []struct {
		name   string
		claims map[string]any
		want   presence.Identity
	}{
		{
			name: "all claims",
			claims: map[string]any{
				"sub": "user-1", "org_id": "acme.io", "name": "Ada Lovelace",
				"picture": "https://example.com/ada.png", "rooms": []string{"doc-*", "lobby"},
				"iat": time.Now().Unix(), "nbf": time.Now().Unix(),
			},
			want: presence.Identity{
				Org: "acme.io", UserID: "user-1", Name: "Ada Lovelace",
				Image: "https://example.com/ada.png", Rooms: []string{"doc-*", "lobby"}, Verified: true,
			},
		},
		{
			name:   "default org, no rooms claim",
			claims: map[string]any{"sub": "u2"},
			want:   presence.Identity{Org: "default", UserID: "u2", Verified: true},
		},
		{
			name:   "empty rooms",
			claims: map[string]any{"sub": "u3", "rooms": []string{}},
			want:   presence.Identity{Org: "default", UserID: "u3", Rooms: []string{}, Verified: true},
		},
		{
			name:   "non-string name and picture ignored",
			claims: map[string]any{"sub": "u4", "name": 7, "picture": false},
			want:   presence.Identity{Org: "default", UserID: "u4", Verified: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustVerify(t, v, authtest.HS256(t, secret, tt.claims))
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("identity = %+v, want %+v", *got, tt.want)
			}
			if (got.Rooms == nil) != (tt.want.Rooms == nil) {
				t.Fatalf("Rooms nil = %v, want %v", got.Rooms == nil, tt.want.Rooms == nil)
			}
		})
	}
}

func TestVerifyRS256FromJWKSFile(t *testing.T) {
	priv, set := authtest.NewRSAKey(t, "rsa-1")
	v := newVerifier(t, auth.Config{JWKSFile: writeSet(t, set)})
	id := mustVerify(t, v, authtest.SignRS256(t, priv, map[string]any{"sub": "alice", "org_id": "acme"}))
	if id.UserID != "alice" || id.Org != "acme" || !id.Verified {
		t.Fatalf("identity = %+v", id)
	}
}

func TestVerifyES256FromJWKSFile(t *testing.T) {
	priv, set := newECKey(t, "ec-1")
	v := newVerifier(t, auth.Config{JWKSFile: writeSet(t, set)})
	tok := signJWS(t, jwa.ES256, priv, `{"sub":"bob","exp":`+future()+`}`)
	if id := mustVerify(t, v, tok); id.UserID != "bob" || id.Org != "default" {
		t.Fatalf("identity = %+v", id)
	}
}

func TestVerifyJWKSURL(t *testing.T) {
	priv, set := authtest.NewRSAKey(t, "rsa-1")
	srv := newJWKSServer(t, set)
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL})
	if id := mustVerify(t, v, authtest.SignRS256(t, priv, map[string]any{"sub": "carol"})); id.UserID != "carol" {
		t.Fatalf("identity = %+v", id)
	}
}

func TestVerifyJWKSURLRotation(t *testing.T) {
	privA, setA := authtest.NewRSAKey(t, "key-a")
	privB, setB := authtest.NewRSAKey(t, "key-b")
	srv := newJWKSServer(t, setA)
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL})
	mustVerify(t, v, authtest.SignRS256(t, privA, map[string]any{"sub": "a"}))

	srv.serve(t, mergeSets(t, setA, setB))
	if id := mustVerify(t, v, authtest.SignRS256(t, privB, map[string]any{"sub": "b"})); id.UserID != "b" {
		t.Fatalf("identity = %+v", id)
	}
	mustVerify(t, v, authtest.SignRS256(t, privA, map[string]any{"sub": "a"}))
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	_, set := authtest.NewRSAKey(t, "known")
	other, _ := authtest.NewRSAKey(t, "unknown")
	srv := newJWKSServer(t, set)
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL})
	start := srv.hits.Load()
	tok := authtest.SignRS256(t, other, map[string]any{"sub": "x"})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustRefuse(t, v, tok)
		}()
	}
	wg.Wait()
	if n := srv.hits.Load() - start; n != 1 {
		t.Fatalf("JWKS fetched %d times for 20 unknown-kid tokens, want 1", n)
	}
}

func TestVerifyCustomOrgClaim(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret, OrgClaim: "tenant"})
	id := mustVerify(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "tenant": "t-1", "org_id": "ignored"}))
	if id.Org != "t-1" {
		t.Fatalf("Org = %q, want t-1", id.Org)
	}
}

func TestVerifyIssuerAudience(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret, Issuer: "https://idp.example", Audience: "presence"})
	for _, aud := range []any{"presence", []string{"other", "presence"}} {
		mustVerify(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "iss": "https://idp.example", "aud": aud}))
	}
	mustRefuse(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "aud": "presence"}))
	mustRefuse(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "iss": "https://idp.example"}))
}

func TestVerifyLeeway(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret}) // default leeway 30s
	mustVerify(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "exp": time.Now().Add(-10 * time.Second)}))
	mustRefuse(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "exp": time.Now().Add(-40 * time.Second)}))

	v = newVerifier(t, auth.Config{HS256Secret: secret, Leeway: 2 * time.Minute})
	mustVerify(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "exp": time.Now().Add(-90 * time.Second)}))
	mustVerify(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u", "nbf": time.Now().Add(90 * time.Second)}))
}

func future() string { return jsonNum(time.Now().Add(time.Hour).Unix()) }

func jsonNum(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifyRefusedHS256(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret, Issuer: "idp", Audience: "presence"})
	ok := func(extra map[string]any) map[string]any {
		c := map[string]any{"sub": "u", "iss": "idp", "aud": "presence"}
		for k, x := range extra {
			c[k] = x
		}
		return c
	}
	hs := func(extra map[string]any) string { return authtest.HS256(t, secret, ok(extra)) }
	rsaPriv, _ := authtest.NewRSAKey(t, "k")
	claimsJSON := `{"sub":"u","iss":"idp","aud":"presence","exp":` + future() + `}`

	mustVerify(t, v, hs(nil)) // the base claims are fine
	tests := map[string]string{
		"expired":            hs(map[string]any{"exp": time.Now().Add(-time.Hour)}),
		"exp missing":        signJWS(t, jwa.HS256, secret, `{"sub":"u","iss":"idp","aud":"presence"}`),
		"exp not a number":   hs(map[string]any{"exp": "tomorrow"}),
		"nbf in 1h":          hs(map[string]any{"nbf": time.Now().Add(time.Hour)}),
		"iat in 1h":          hs(map[string]any{"iat": time.Now().Add(time.Hour)}),
		"alg none":           b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(claimsJSON) + ".",
		"RS256 token":        authtest.SignRS256(t, rsaPriv, ok(nil)),
		"HS384 token":        signJWS(t, jwa.HS384, secret, claimsJSON),
		"wrong secret":       authtest.HS256(t, []byte("another-secret-another-secret-xx"), ok(nil)),
		"wrong iss":          hs(map[string]any{"iss": "evil"}),
		"wrong aud":          hs(map[string]any{"aud": []string{"other"}}),
		"org with space":     hs(map[string]any{"org_id": "acme corp"}),
		"org with braces":    hs(map[string]any{"org_id": "a{b}"}),
		"org empty":          hs(map[string]any{"org_id": ""}),
		"org not a string":   hs(map[string]any{"org_id": 42}),
		"sub missing":        signJWS(t, jwa.HS256, secret, `{"iss":"idp","aud":"presence","exp":`+future()+`}`),
		"sub not a string":   hs(map[string]any{"sub": 12}),
		"sub with newline":   hs(map[string]any{"sub": "a\nb"}),
		"sub too long":       hs(map[string]any{"sub": strings.Repeat("u", 257)}),
		"name control char":  hs(map[string]any{"name": "a\x00b"}),
		"name too long":      hs(map[string]any{"name": strings.Repeat("n", 257)}),
		"picture too long":   hs(map[string]any{"picture": strings.Repeat("p", 2049)}),
		"rooms a string":     hs(map[string]any{"rooms": "doc-*"}),
		"rooms an object":    hs(map[string]any{"rooms": map[string]any{"a": 1}}),
		"rooms null":         hs(map[string]any{"rooms": nil}),
		"rooms not strings":  hs(map[string]any{"rooms": []any{"a", 1}}),
		"rooms bad pattern":  hs(map[string]any{"rooms": []string{"doc-["}}),
		"claims not object":  signJWS(t, jwa.HS256, secret, `["sub"]`),
		"claims not JSON":    signJWS(t, jwa.HS256, secret, `not json`),
		"tampered payload":   tamper(hs(nil)),
		"empty":              "",
		"abc":                "abc",
		"a.b.c":              "a.b.c",
		"four parts":         hs(nil) + ".x",
		"JSON serialization": `{"payload":"` + b64(claimsJSON) + `","signatures":[]}`,
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) { mustRefuse(t, v, tok) })
	}
}

// tamper swaps the payload of a token for another one.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64(`{"sub":"admin","iss":"idp","aud":"presence","exp":` + future() + `}`)
	return strings.Join(parts, ".")
}

func TestVerifyRefusesOversizedToken(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret})
	tok := authtest.HS256(t, secret, map[string]any{"sub": "u", "pad": strings.Repeat("x", 8192)})
	pe := mustRefuse(t, v, tok)
	if !strings.Contains(pe.Message, "too large") {
		t.Fatalf("message = %q, want the size refusal", pe.Message)
	}
}

// signRaw returns the compact JWS of header and payload exactly as given
// (any bytes, base64url-encoded here), signed HS256 with key.
func signRaw(key []byte, header, payload string) string {
	s := b64(header) + "." + b64(payload)
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// TestVerifyRefusesLossyJSONText: regression for a security test finding.
// encoding/json replaces invalid UTF-8 and lone UTF-16 surrogate escapes by
// U+FFFD, so "sub":"bob\ud800", "sub":"bob\udfff", and a sub of raw bytes
// "bob\xff" or "bob\xfe" all became the user "bob\uFFFD": one token could
// read and remove another user's rooms and sessions. A token whose claims
// or header JSON holds invalid UTF-8 or a lone surrogate escape anywhere is
// refused, never repaired.
func TestVerifyRefusesLossyJSONText(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret})
	const hdr = `{"alg":"HS256","typ":"JWT"}`
	exp := `,"exp":` + future() + `}`
	claims := func(sub string) string { return `{"sub":"` + sub + `"` + exp }

	for _, tt := range []struct{ name, header, payload, want string }{
		{"plain", hdr, claims(`bob`), "bob"},
		{"surrogate pair", hdr, claims(`bob\ud83d\ude00`), "bob\U0001F600"},
		{"surrogate pair, upper-case hex", hdr, claims(`bob\uD83D\uDE00`), "bob\U0001F600"},
		{"raw UTF-8 outside the BMP", hdr, claims("bob\U0001F600"), "bob\U0001F600"},
		{"escaped backslash, then ud800", hdr, claims(`bob\\ud800`), `bob\ud800`},
		{"three backslashes: one escaped, then a pair", hdr, claims(`bob\\\ud83d\ude00`), "bob\\\U0001F600"},
		{"U+FFFD itself", hdr, claims(`bob\ufffd`), "bob\uFFFD"},
	} {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			if got := mustVerify(t, v, signRaw(secret, tt.header, tt.payload)); got.UserID != tt.want {
				t.Fatalf("UserID = %q, want %q", got.UserID, tt.want)
			}
		})
	}

	for _, tt := range []struct{ name, header, payload string }{
		// The four subs of the report, which all decoded to "bob\uFFFD".
		{"sub lone high surrogate", hdr, claims(`bob\ud800`)},
		{"sub lone low surrogate", hdr, claims(`bob\udfff`)},
		{"sub raw 0xff", hdr, claims("bob\xff")},
		{"sub raw 0xfe", hdr, claims("bob\xfe")},
		// Other spellings of a broken string.
		{"sub reversed pair", hdr, claims(`bob\udc00\ud800`)},
		{"sub high surrogate then a letter", hdr, claims(`bob\ud800\u0041`)},
		{"sub two high surrogates", hdr, claims(`bob\ud800\ud800`)},
		{"sub high surrogate then raw text", hdr, claims(`bob\ud800x`)},
		{"sub escaped backslash, then a lone surrogate", hdr, claims(`bob\\\ud800`)},
		{"sub truncated UTF-8 sequence", hdr, claims("bob\xe2\x82")},
		{"sub overlong UTF-8", hdr, claims("bob\xc0\xaf")},
		{"sub UTF-8 encoded surrogate", hdr, claims("bob\xed\xa0\x80")},
		// Anywhere else in the claims.
		{"org lone surrogate", hdr, `{"sub":"bob","org_id":"acme\udfff"` + exp},
		{"name lone surrogate", hdr, `{"sub":"bob","name":"Bob\udc00"` + exp},
		{"picture raw 0xff", hdr, "{\"sub\":\"bob\",\"picture\":\"https://x/\xff.png\"" + exp},
		{"unknown claim lone surrogate", hdr, `{"sub":"bob","x":"\ud800"` + exp},
		{"claim name lone surrogate", hdr, `{"sub":"bob","\ud800":1` + exp},
		{"rooms raw 0xfe", hdr, "{\"sub\":\"bob\",\"rooms\":[\"doc-\xfe\"]" + exp},
		// The header.
		{"header lone surrogate", `{"alg":"HS256","typ":"JWT\ud800"}`, claims(`bob`)},
		{"header raw 0xff", "{\"alg\":\"HS256\",\"typ\":\"JWT\xff\"}", claims(`bob`)},
	} {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			if pe := mustRefuse(t, v, signRaw(secret, tt.header, tt.payload)); !strings.HasSuffix(pe.Message, "not valid UTF-8") {
				t.Fatalf("message = %q, want the UTF-8 refusal", pe.Message)
			}
		})
	}
}

// TestVerifyRefusesInvisibleSub: a sub with a bidi control or an invisible
// character looks like another user's id; presence.ValidateUserID refuses
// it, and so does Verify.
func TestVerifyRefusesInvisibleSub(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret})
	for _, r := range []rune{
		0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C,
		0x200B, 0x2060, 0xFEFF, 0x00AD, 0x180E,
	} {
		t.Run(fmt.Sprintf("U+%04X", r), func(t *testing.T) {
			mustRefuse(t, v, authtest.HS256(t, secret, map[string]any{"sub": "bob" + string(r)}))
			mustRefuse(t, v, signRaw(secret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":"%cbob","exp":%s}`, r, future())))
			mustRefuse(t, v, signRaw(secret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":"b\u%04xob","exp":%s}`, r, future())))
		})
	}
}

// TestVerifyRefusesCritHeader: regression for a security test finding. A
// protected header with "crit" lists extensions the verifier must
// understand (RFC 7515 §4.1.11); this verifier understands none, so any
// crit member, even an empty or malformed one, refuses the token. jwx
// does not check crit by itself.
func TestVerifyRefusesCritHeader(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secret: secret})
	claims := `{"sub":"bob","exp":` + future() + `}`
	// An unknown header parameter that is not critical may be ignored.
	mustVerify(t, v, signRaw(secret, `{"alg":"HS256","zzz":1}`, claims))
	for name, header := range map[string]string{
		"the reported header":                `{"alg":"HS256","crit":["zzz"],"zzz":1}`,
		"crit naming a registered parameter": `{"alg":"HS256","typ":"JWT","crit":["typ"]}`,
		"crit naming exp":                    `{"alg":"HS256","crit":["exp"],"exp":1}`,
		"crit empty":                         `{"alg":"HS256","crit":[]}`,
		"crit null":                          `{"alg":"HS256","crit":null}`,
		"crit a string":                      `{"alg":"HS256","crit":"zzz","zzz":1}`,
		"crit a number":                      `{"alg":"HS256","crit":1}`,
		"crit spelled with an escape":        `{"alg":"HS256","cr\u0069t":["zzz"],"zzz":1}`,
		"crit twice":                         `{"alg":"HS256","crit":["zzz"],"crit":[],"zzz":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			if pe := mustRefuse(t, v, signRaw(secret, header, claims)); pe.Message != "invalid token: unsupported header crit" {
				t.Fatalf("message = %q, want the crit refusal", pe.Message)
			}
		})
	}

	// The same with a key from a key set.
	priv, set := authtest.NewRSAKey(t, "rsa-1")
	vj := newVerifier(t, auth.Config{JWKSFile: writeSet(t, set)})
	hdr := jws.NewHeaders()
	for k, x := range map[string]any{jws.KeyIDKey: "rsa-1", jws.CriticalKey: []string{"zzz"}, "zzz": 1} {
		if err := hdr.Set(k, x); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign([]byte(claims), jws.WithKey(jwa.RS256, priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, vj, string(tok))
}

func TestVerifyRefusedJWKS(t *testing.T) {
	rsaPriv, rsaSet := authtest.NewRSAKey(t, "rsa-1")
	ecPriv, ecSet := newECKey(t, "ec-1")
	stranger, _ := authtest.NewRSAKey(t, "stranger")
	v := newVerifier(t, auth.Config{JWKSFile: writeSet(t, mergeSets(t, rsaSet, ecSet))})

	// Raw keys, so that jws.Sign does not set the kid from the key.
	var rsaRaw, ecRaw, rsaPub any
	pubKey, _ := rsaPriv.PublicKey()
	for _, k := range []struct {
		key jwk.Key
		dst *any
	}{{rsaPriv, &rsaRaw}, {ecPriv, &ecRaw}, {pubKey, &rsaPub}} {
		if err := k.key.Raw(k.dst); err != nil {
			t.Fatal(err)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	claims := `{"sub":"u","exp":` + future() + `}`
	withKid := func(alg jwa.SignatureAlgorithm, key any, kid string) string {
		hdr := jws.NewHeaders()
		hdr.Set(jws.KeyIDKey, kid)
		tok, err := jws.Sign([]byte(claims), jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}

	mustVerify(t, v, authtest.SignRS256(t, rsaPriv, map[string]any{"sub": "u"}))
	tests := map[string]string{
		"HS256 token":                  authtest.HS256(t, secret, map[string]any{"sub": "u"}),
		"HS256 keyed with RSA PEM":     withKid(jwa.HS256, pemBytes, "rsa-1"),
		"HS256 keyed with RSA DER":     withKid(jwa.HS256, der, "rsa-1"),
		"unknown kid":                  authtest.SignRS256(t, stranger, map[string]any{"sub": "u"}),
		"no kid":                       signJWS(t, jwa.RS256, rsaRaw, claims),
		"RS384 with RS256 key":         withKid(jwa.RS384, rsaRaw, "rsa-1"),
		"ES256 token naming RSA key":   withKid(jwa.ES256, ecRaw, "rsa-1"),
		"RS256 token naming EC key":    withKid(jwa.RS256, rsaRaw, "ec-1"),
		"alg none":                     b64(`{"alg":"none","kid":"rsa-1"}`) + "." + b64(claims) + ".",
		"alg none with RS256 sig part": b64(`{"alg":"none","kid":"rsa-1"}`) + "." + b64(claims) + "." + strings.Split(authtest.SignRS256(t, rsaPriv, nil), ".")[2],
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) { mustRefuse(t, v, tok) })
	}
}

func TestVerifySecretAndJWKS(t *testing.T) {
	priv, set := authtest.NewRSAKey(t, "rsa-1")
	v := newVerifier(t, auth.Config{HS256Secret: secret, JWKSFile: writeSet(t, set)})
	mustVerify(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u"}))
	mustVerify(t, v, authtest.SignRS256(t, priv, map[string]any{"sub": "u"}))
	mustRefuse(t, v, authtest.HS256(t, []byte("another-secret-another-secret-xx"), map[string]any{"sub": "u"}))
}

func TestVerifyWhenDisabled(t *testing.T) {
	v := newVerifier(t, auth.Config{})
	mustRefuse(t, v, authtest.HS256(t, secret, map[string]any{"sub": "u"}))
}

func TestNewVerifierErrors(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	empty := newJWKSServer(t, jwk.NewSet())
	garbage := filepath.Join(t.TempDir(), "garbage.json")
	if err := os.WriteFile(garbage, []byte("not a key set"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]auth.Config{
		"nonexistent JWKS file": {JWKSFile: filepath.Join(t.TempDir(), "nope.json")},
		"garbage JWKS file":     {JWKSFile: garbage},
		"empty JWKS file":       {JWKSFile: writeSet(t, jwk.NewSet())},
		"short secret":          {HS256Secret: []byte("short")},
		"empty secret":          {HS256Secret: []byte{}},
		"JWKS URL down":         {JWKSURL: down.URL},
		"JWKS URL 404":          {JWKSURL: notFound.URL},
		"JWKS URL empty set":    {JWKSURL: empty.URL},
		"JWKS URL not http":     {JWKSURL: "file:///etc/passwd"},
		"file and URL":          {JWKSFile: garbage, JWKSURL: empty.URL},
		"negative leeway":       {HS256Secret: secret, Leeway: -time.Second},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			cfg.Logger = quiet
			v, err := auth.NewVerifier(context.Background(), cfg)
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier succeeded")
			}
		})
	}
}

func TestIsAdminToken(t *testing.T) {
	v := newVerifier(t, auth.Config{AdminToken: "s3cret-admin"})
	if !v.IsAdminToken("s3cret-admin") {
		t.Error("the admin token was not recognised")
	}
	for _, bad := range []string{"", "s3cret-admi", "s3cret-admin2", "S3CRET-ADMIN"} {
		if v.IsAdminToken(bad) {
			t.Errorf("IsAdminToken(%q) = true", bad)
		}
	}
	none := newVerifier(t, auth.Config{})
	for _, bearer := range []string{"", "s3cret-admin"} {
		if none.IsAdminToken(bearer) {
			t.Errorf("IsAdminToken(%q) = true with no admin token configured", bearer)
		}
	}
}

func TestEnabled(t *testing.T) {
	_, set := authtest.NewRSAKey(t, "rsa-1")
	srv := newJWKSServer(t, set)
	file := writeSet(t, set)
	tests := []struct {
		name string
		cfg  auth.Config
		want bool
	}{
		{"nothing", auth.Config{}, false},
		{"admin token only", auth.Config{AdminToken: "x", Issuer: "i", Audience: "a"}, false},
		{"HS256 secret", auth.Config{HS256Secret: secret}, true},
		{"JWKS file", auth.Config{JWKSFile: file}, true},
		{"JWKS URL", auth.Config{JWKSURL: srv.URL}, true},
		{"secret and JWKS", auth.Config{HS256Secret: secret, JWKSURL: srv.URL}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newVerifier(t, tt.cfg).Enabled(); got != tt.want {
				t.Fatalf("Enabled() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	_, set := authtest.NewRSAKey(t, "rsa-1")
	srv := newJWKSServer(t, set)
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL})
	for range 2 {
		if err := v.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	other, _ := authtest.NewRSAKey(t, "other")
	mustRefuse(t, v, authtest.SignRS256(t, other, map[string]any{"sub": "u"})) // no hang after Close
}
