package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// forcedRefreshGap is the least time between two refreshes of the JWKS URL
// forced by unknown key ids, so that a flood of them cannot hammer the server.
const forcedRefreshGap = 5 * time.Second

// remoteKeys is the key set at a JWKS URL, kept by a jwk.Cache that refreshes
// it in the background.
type remoteKeys struct {
	url    string
	cache  *jwk.Cache
	ctx    context.Context // lives until Close
	cancel context.CancelFunc
	log    *slog.Logger
	keys   atomic.Pointer[jwk.Set] // latest good set, stored on every fetch

	mu         sync.Mutex // serialises forced refreshes
	lastForced time.Time
}

func newRemoteKeys(ctx context.Context, cfg Config, log *slog.Logger) (*remoteKeys, error) {
	if err := validURL(cfg.JWKSURL); err != nil {
		return nil, err
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	interval := cfg.RefreshInterval
	if interval == 0 {
		interval = DefaultRefreshInterval
	}
	// The cache outlives ctx, which only bounds the first fetch.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &remoteKeys{url: cfg.JWKSURL, ctx: cctx, cancel: cancel, log: log}
	r.cache = jwk.NewCache(cctx, jwk.WithErrSink(r))
	err := r.cache.Register(r.url,
		jwk.WithHTTPClient(client),
		jwk.WithRefreshInterval(interval),
		jwk.WithPostFetcher(jwk.PostFetchFunc(r.store)))
	if err == nil {
		_, err = r.cache.Refresh(ctx, r.url)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKSURL: %w", err)
	}
	return r, nil
}

// store is the cache's post-fetch hook: it keeps the public keys of each
// fetched set, refusing an empty one (the cache then keeps the previous set).
func (r *remoteKeys) store(_ string, set jwk.Set) (jwk.Set, error) {
	pub, err := publicKeys(set)
	if err != nil {
		return nil, err
	}
	r.keys.Store(&pub)
	r.log.Debug("auth: JWKS fetched", "url", r.url, "keys", pub.Len())
	return pub, nil
}

// Error is the cache's error sink: it logs failed background refreshes.
func (r *remoteKeys) Error(err error) {
	r.log.Warn("auth: JWKS refresh failed; keeping the previous key set", "url", r.url, "err", err)
}

func (r *remoteKeys) cached(kid string) (jwk.Key, bool) {
	set := r.keys.Load()
	if set == nil {
		return nil, false
	}
	return (*set).LookupKeyID(kid)
}

// lookup returns the key with the given id. When the cached set lacks it, it
// refreshes the set once (at most once per forcedRefreshGap) and looks again,
// so that a key rotated in at the identity provider works at once.
func (r *remoteKeys) lookup(ctx context.Context, kid string) (jwk.Key, bool) {
	if k, ok := r.cached(kid); ok {
		return k, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.cached(kid); ok { // refreshed while we waited
		return k, true
	}
	if r.ctx.Err() != nil || time.Since(r.lastForced) < forcedRefreshGap {
		return nil, false
	}
	r.lastForced = time.Now()
	fctx, cancel := context.WithTimeout(ctx, 2*defaultHTTPTimeout)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)() // Close ends the fetch too
	if _, err := r.cache.Refresh(fctx, r.url); err != nil {
		r.log.Warn("auth: JWKS refresh for an unknown key id failed", "url", r.url, "kid", kid, "err", err)
		return nil, false
	}
	return r.cached(kid)
}

// keyAlgorithms returns the signature algorithms that key may verify: the one
// it declares, or else those its type implies. Symmetric keys get none.
func keyAlgorithms(key jwk.Key) []jwa.SignatureAlgorithm {
	if use := key.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return nil
	}
	var implied []jwa.SignatureAlgorithm
	switch key.KeyType() {
	case jwa.RSA:
		implied = []jwa.SignatureAlgorithm{jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512}
	case jwa.EC:
		crv, _ := key.Get(jwk.ECDSACrvKey)
		switch crv {
		case jwa.P256:
			implied = []jwa.SignatureAlgorithm{jwa.ES256}
		case jwa.P384:
			implied = []jwa.SignatureAlgorithm{jwa.ES384}
		case jwa.P521:
			implied = []jwa.SignatureAlgorithm{jwa.ES512}
		}
	case jwa.OKP:
		if crv, _ := key.Get(jwk.OKPCrvKey); crv == jwa.Ed25519 {
			implied = []jwa.SignatureAlgorithm{jwa.EdDSA}
		}
	}
	declared := key.Algorithm().String()
	if declared == "" {
		return implied
	}
	for _, alg := range implied {
		if alg.String() == declared {
			return []jwa.SignatureAlgorithm{alg}
		}
	}
	return nil // declares an algorithm its type cannot do
}
