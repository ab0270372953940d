package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Defaults and limits.
const (
	MaxTokenBytes          = 8192             // longer tokens are refused unparsed
	MinHS256SecretBytes    = 32               // RFC 7518 §3.2: at least the hash size
	DefaultOrg             = "default"        // org of a token without an org claim
	DefaultOrgClaim        = "org_id"         // claim naming the org
	DefaultLeeway          = 30 * time.Second // clock skew allowed for exp/nbf/iat
	DefaultRefreshInterval = 15 * time.Minute // JWKS URL refresh
	defaultHTTPTimeout     = 5 * time.Second
)

// Config configures a Verifier. Auth is on when any of HS256Secret, JWKSURL
// or JWKSFile is set.
type Config struct {
	HS256Secret     []byte        // verify HS256 JWTs with this shared secret (at least 32 bytes)
	JWKSURL         string        // verify with the key set at this URL (cached, refreshed, rotation by kid)
	JWKSFile        string        // verify with the key set in this file; not together with JWKSURL
	Issuer          string        // required `iss` when set
	Audience        string        // required `aud` when set
	OrgClaim        string        // claim naming the org; zero means "org_id"
	Leeway          time.Duration // clock skew allowed for exp/nbf/iat; zero means 30s
	RefreshInterval time.Duration // JWKS URL refresh; zero means 15m
	AdminToken      string        // bearer token for admin endpoints; empty = no admin token
	HTTPClient      *http.Client  // for JWKS URL; nil means a client with a 5s timeout
	Logger          *slog.Logger  // nil means slog.Default()
}

// Verifier verifies JWTs and the admin token. It is safe for concurrent use.
type Verifier struct {
	secret    []byte
	fileKeys  jwk.Set     // from Config.JWKSFile, public keys only
	remote    *remoteKeys // from Config.JWKSURL
	issuer    string
	audience  string
	orgClaim  string
	leeway    time.Duration
	hasAdmin  bool
	adminHash [sha256.Size]byte
	log       *slog.Logger
}

// NewVerifier checks cfg and returns a Verifier. It fails when the secret is
// too short, the JWKS file cannot be read or holds no key, or the first fetch
// of the JWKS URL fails. ctx bounds that first fetch only; call Close to stop
// the background refresh.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	v := &Verifier{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		orgClaim: cfg.OrgClaim,
		leeway:   cfg.Leeway,
		log:      cfg.Logger,
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	if v.orgClaim == "" {
		v.orgClaim = DefaultOrgClaim
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.leeway < 0 {
		return nil, errors.New("auth: Leeway must not be negative")
	}
	if cfg.RefreshInterval < 0 {
		return nil, errors.New("auth: RefreshInterval must not be negative")
	}
	if cfg.JWKSURL != "" && cfg.JWKSFile != "" {
		return nil, errors.New("auth: set JWKSURL or JWKSFile, not both")
	}
	if cfg.HS256Secret != nil {
		if len(cfg.HS256Secret) < MinHS256SecretBytes {
			return nil, fmt.Errorf("auth: HS256Secret must be at least %d bytes", MinHS256SecretBytes)
		}
		v.secret = append([]byte(nil), cfg.HS256Secret...)
	}
	if cfg.AdminToken != "" {
		v.hasAdmin = true
		v.adminHash = sha256.Sum256([]byte(cfg.AdminToken))
	}
	if cfg.JWKSFile != "" {
		set, err := readKeySet(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		v.fileKeys = set
	}
	if cfg.JWKSURL != "" {
		r, err := newRemoteKeys(ctx, cfg, v.log)
		if err != nil {
			return nil, err
		}
		v.remote = r
	}
	v.log.Info("auth configured",
		"enabled", v.Enabled(),
		"hs256", v.secret != nil,
		"jwks_file", cfg.JWKSFile,
		"jwks_url", cfg.JWKSURL,
		"issuer", v.issuer,
		"audience", v.audience,
		"org_claim", v.orgClaim,
		"admin_token", v.hasAdmin)
	return v, nil
}

// Enabled reports whether tokens can be verified, that is whether any of
// HS256Secret, JWKSURL or JWKSFile was set (auth is "on").
func (v *Verifier) Enabled() bool {
	return v != nil && (v.secret != nil || v.fileKeys != nil || v.remote != nil)
}

// IsAdminToken reports, in constant time, whether bearer is the admin token.
// It is false when no admin token is configured.
func (v *Verifier) IsAdminToken(bearer string) bool {
	if v == nil || !v.hasAdmin {
		return false
	}
	h := sha256.Sum256([]byte(bearer))
	return subtle.ConstantTimeCompare(h[:], v.adminHash[:]) == 1
}

// Close stops the background refresh of the JWKS URL. It is idempotent.
func (v *Verifier) Close() error {
	if v != nil && v.remote != nil {
		v.remote.cancel()
	}
	return nil
}

// readKeySet reads a JWK set (or a single JWK) from a file and keeps the
// public keys.
func readKeySet(name string) (jwk.Set, error) {
	buf, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKSFile: %w", err)
	}
	set, err := jwk.Parse(buf)
	if err != nil {
		return nil, fmt.Errorf("auth: parse JWKSFile %s: %w", name, err)
	}
	set, err = publicKeys(set)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKSFile %s: %w", name, err)
	}
	return set, nil
}

// publicKeys returns the public keys of set, and an error when it has none.
func publicKeys(set jwk.Set) (jwk.Set, error) {
	if set.Len() == 0 {
		return nil, errors.New("key set is empty")
	}
	return jwk.PublicSetOf(set)
}

func validURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("auth: JWKSURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("auth: JWKSURL must be an http(s) URL, got %q", s)
	}
	return nil
}
