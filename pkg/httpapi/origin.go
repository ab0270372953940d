package httpapi

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// origins is the one rule for browser origins, used by HTTP CORS and by the
// WebSocket Origin check alike: an origin is allowed when it equals an
// entry of PRESENCE_CORS_ORIGINS (scheme, host and port; case does not
// matter), matches an entry with "*" wildcards ("https://*.example.com"),
// or the list holds "*".
type origins struct {
	any      bool
	exact    map[string]bool
	patterns []*regexp.Regexp
}

func newOrigins(list []string) *origins {
	o := &origins{exact: map[string]bool{}}
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "*":
			o.any = true
		case strings.Contains(e, "*"):
			p := "^" + strings.ReplaceAll(regexp.QuoteMeta(e), `\*`, `[^/]*`) + "$"
			o.patterns = append(o.patterns, regexp.MustCompile(p))
		case e != "":
			o.exact[strings.TrimSuffix(e, "/")] = true
		}
	}
	return o
}

func (o *origins) allowed(origin string) bool {
	if o.any {
		return true
	}
	origin = strings.ToLower(origin)
	if o.exact[origin] {
		return true
	}
	for _, p := range o.patterns {
		if p.MatchString(origin) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether a WebSocket's Origin is the node's own (a page
// the node serves, such as the demo): the same host, and the same scheme
// when the node knows it (TLS, or X-Forwarded-Proto from the load balancer).
func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	scheme := r.Header.Get("X-Forwarded-Proto")
	if scheme == "" && r.TLS != nil {
		scheme = "https"
	}
	return scheme == "" || strings.EqualFold(u.Scheme, scheme)
}
