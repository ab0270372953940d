// Package authtest makes keys and signed JWTs for tests of code that uses
// package auth.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// HS256 returns a JWT with the given claims signed with secret. Claims without
// "exp" get exp = now+1h; time.Time values become NumericDates.
func HS256(tb testing.TB, secret []byte, claims map[string]any) string {
	tb.Helper()
	return sign(tb, jwa.HS256, secret, claims)
}

// NewRSAKey returns a new 2048-bit RSA private key with key id kid and
// algorithm RS256, and a set holding its public key.
func NewRSAKey(tb testing.TB, kid string) (priv jwk.Key, publicSet jwk.Set) {
	tb.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("authtest: generate RSA key: %v", err)
	}
	priv, err = jwk.FromRaw(raw)
	if err != nil {
		tb.Fatalf("authtest: RSA key to JWK: %v", err)
	}
	if err := priv.Set(jwk.KeyIDKey, kid); err != nil {
		tb.Fatalf("authtest: set kid: %v", err)
	}
	if err := priv.Set(jwk.AlgorithmKey, jwa.RS256); err != nil {
		tb.Fatalf("authtest: set alg: %v", err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		tb.Fatalf("authtest: public key: %v", err)
	}
	publicSet = jwk.NewSet()
	if err := publicSet.AddKey(pub); err != nil {
		tb.Fatalf("authtest: add key: %v", err)
	}
	return priv, publicSet
}

// SignRS256 returns a JWT with the given claims signed with priv, whose key id
// goes in the header. Claims get the same defaults as in HS256.
func SignRS256(tb testing.TB, priv jwk.Key, claims map[string]any) string {
	tb.Helper()
	return sign(tb, jwa.RS256, priv, claims)
}

func sign(tb testing.TB, alg jwa.SignatureAlgorithm, key any, claims map[string]any) string {
	tb.Helper()
	c := make(map[string]any, len(claims)+1)
	for k, v := range claims {
		if t, ok := v.(time.Time); ok {
			v = t.Unix()
		}
		c[k] = v
	}
	if _, ok := c["exp"]; !ok {
		c["exp"] = time.Now().Add(time.Hour).Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		tb.Fatalf("authtest: marshal claims: %v", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		tb.Fatalf("authtest: set typ: %v", err)
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatalf("authtest: sign: %v", err)
	}
	return string(tok)
}
