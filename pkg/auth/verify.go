package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"path"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/presencecluster/presence/pkg/presence"
)

// refusal is the reason a token was refused; its text follows
// "invalid token: " in the error the caller sees.
type refusal string

// Verify checks a JWT (compact serialisation, no "Bearer " prefix) and returns
// the verified identity it carries. Every refusal is a *presence.Error with
// code presence.EUNAUTHORIZED and message "invalid token: <reason>".
func (v *Verifier) Verify(ctx context.Context, raw string) (*presence.Identity, error) {
	id, reason := v.verify(ctx, raw)
	if reason != "" {
		v.log.DebugContext(ctx, "auth: token refused", "reason", string(reason))
		return nil, presence.Errorf(presence.EUNAUTHORIZED, "invalid token: %s", reason)
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*presence.Identity, refusal) {
	if !v.Enabled() {
		return nil, "authentication is not configured"
	}
	if len(raw) > MaxTokenBytes {
		return nil, "too large"
	}
	payload, reason := v.verifySignature(ctx, raw)
	if reason != "" {
		return nil, reason
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil || dec.More() {
		return nil, "claims are not a JSON object"
	}
	if reason := v.checkTimes(claims, time.Now()); reason != "" {
		return nil, reason
	}
	return v.identity(claims)
}

// verifySignature checks the token's signature with the key its header picks
// and returns the payload.
func (v *Verifier) verifySignature(ctx context.Context, raw string) ([]byte, refusal) {
	header, payload, ok := canonicalCompact(raw)
	if !ok {
		return nil, "malformed"
	}
	// encoding/json (and jwx) would replace invalid UTF-8 and lone surrogate
	// escapes by U+FFFD: two different subs would become one user.
	if presence.CheckJSONText(header) != nil {
		return nil, "header is not valid UTF-8"
	}
	if presence.CheckJSONText(payload) != nil {
		return nil, "claims are not valid UTF-8"
	}
	// RFC 7515 §4.1.11: a token naming critical extensions must be refused
	// unless the verifier understands them all; this one understands none
	// (and jwx does not check crit).
	var members map[string]json.RawMessage
	if json.Unmarshal(header, &members) != nil {
		return nil, "malformed"
	}
	if _, ok := members["crit"]; ok {
		return nil, "unsupported header crit"
	}
	msg, err := jws.Parse([]byte(raw), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, "malformed"
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if _, ok := hdr.Get("b64"); ok {
		return nil, "unsupported header b64"
	}
	alg := jwa.SignatureAlgorithm(hdr.Algorithm().String())

	var key any
	switch {
	case alg == jwa.HS256 && v.secret != nil:
		key = v.secret
	case v.fileKeys != nil || v.remote != nil:
		k, reason := v.jwksKey(ctx, hdr.KeyID(), alg)
		if reason != "" {
			return nil, reason
		}
		key = k
	default:
		return nil, "unexpected algorithm"
	}
	verified, err := jws.Verify([]byte(raw), jws.WithKey(alg, key))
	if err != nil {
		return nil, "bad signature"
	}
	if !bytes.Equal(verified, payload) { // what was checked above is what gets decoded
		return nil, "malformed"
	}
	return verified, ""
}

// jwksKey returns the key of the configured key set with id kid, provided it
// may verify alg.
func (v *Verifier) jwksKey(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, refusal) {
	if kid == "" {
		return nil, "missing key id"
	}
	var key jwk.Key
	var ok bool
	if v.fileKeys != nil {
		key, ok = v.fileKeys.LookupKeyID(kid)
	} else {
		key, ok = v.remote.lookup(ctx, kid)
	}
	if !ok {
		return nil, "unknown key id"
	}
	for _, a := range keyAlgorithms(key) {
		if a == alg {
			return key, ""
		}
	}
	return nil, "unexpected algorithm"
}

// checkTimes checks exp (required), nbf and iat against now, with leeway.
func (v *Verifier) checkTimes(claims map[string]any, now time.Time) refusal {
	exp, ok, valid := numericDate(claims, "exp")
	switch {
	case !ok:
		return "exp is required"
	case !valid:
		return "exp is not a number"
	case now.After(exp.Add(v.leeway)):
		return "expired"
	}
	if nbf, ok, valid := numericDate(claims, "nbf"); ok {
		if !valid {
			return "nbf is not a number"
		}
		if now.Add(v.leeway).Before(nbf) {
			return "not valid yet"
		}
	}
	if iat, ok, valid := numericDate(claims, "iat"); ok {
		if !valid {
			return "iat is not a number"
		}
		if now.Add(v.leeway).Before(iat) {
			return "issued in the future"
		}
	}
	return ""
}

// numericDate reads a NumericDate claim: ok tells whether it is present, valid
// whether it is a number.
func numericDate(claims map[string]any, name string) (t time.Time, ok, valid bool) {
	c, ok := claims[name]
	if !ok {
		return time.Time{}, false, false
	}
	n, isNum := c.(json.Number)
	if !isNum {
		return time.Time{}, true, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e15 { // 1e15 s is ~30 million years
		return time.Time{}, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

// identity checks the remaining claims and builds the identity.
func (v *Verifier) identity(claims map[string]any) (*presence.Identity, refusal) {
	if v.issuer != "" {
		if iss, _ := claims["iss"].(string); iss != v.issuer {
			return nil, "wrong issuer"
		}
	}
	if v.audience != "" && !hasAudience(claims["aud"], v.audience) {
		return nil, "wrong audience"
	}
	sub, _ := claims["sub"].(string)
	if presence.ValidateUserID(sub) != nil {
		return nil, "sub is missing or invalid"
	}
	id := &presence.Identity{Org: DefaultOrg, UserID: sub, Verified: true}
	if c, ok := claims[v.orgClaim]; ok {
		org, _ := c.(string)
		if presence.ValidateOrg(org) != nil {
			return nil, refusal(v.orgClaim + " is not a valid org")
		}
		id.Org = org
	}
	id.Name, _ = claims["name"].(string)
	if presence.ValidateText("name", id.Name, presence.MaxNameBytes) != nil {
		return nil, "name is invalid"
	}
	id.Image, _ = claims["picture"].(string)
	if presence.ValidateText("picture", id.Image, presence.MaxImageBytes) != nil {
		return nil, "picture is invalid"
	}
	if c, ok := claims["rooms"]; ok {
		rooms, valid := roomPatterns(c)
		if !valid {
			return nil, "rooms must be an array of glob patterns"
		}
		id.Rooms = rooms
	}
	return id, ""
}

func hasAudience(aud any, want string) bool {
	switch aud := aud.(type) {
	case string:
		return aud == want
	case []any:
		for _, a := range aud {
			if s, _ := a.(string); s == want {
				return true
			}
		}
	}
	return false
}

// roomPatterns reads the rooms claim: an array of path.Match patterns. The
// result is non-nil, even when empty.
func roomPatterns(c any) ([]string, bool) {
	arr, ok := c.([]any)
	if !ok {
		return nil, false
	}
	rooms := make([]string, 0, len(arr))
	for _, a := range arr {
		p, ok := a.(string)
		if !ok {
			return nil, false
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, false
		}
		rooms = append(rooms, p)
	}
	return rooms, true
}

// canonicalCompact reports whether raw is a compact JWS in exactly one
// spelling: three segments of canonical base64url (no padding, no line
// breaks, no stray trailing bits), the first two each exactly one JSON
// object. jwx alone is more lenient: it verifies the signature over what it
// re-encodes, so other spellings of a signed token (and bytes after the
// header's JSON object) would pass. It returns the decoded header and
// payload.
func canonicalCompact(raw string) (header, payload []byte, ok bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	var segs [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != p {
			return nil, nil, false
		}
		segs[i] = b
	}
	for _, b := range segs[:2] {
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil || obj == nil {
			return nil, nil, false
		}
	}
	return segs[0], segs[1], true
}
