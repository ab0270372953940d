package demo

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:generate go run gen.go

//go:embed static
var static embed.FS

// csp allows the page its own script, style and images, and connections
// to its own origin (HTTP and WebSocket).
const csp = "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the demo page: index.html at "/", app.js (the page's
// script) and presence.js (the client). Mount it under a prefix with
// http.StripPrefix.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		files.ServeHTTP(w, r)
	})
}
