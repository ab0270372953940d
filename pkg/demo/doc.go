// Package demo serves the live demo page of presenced at /demo/: pick a
// name and a room, see the room's face pile change as other tabs join,
// hide and close. The page is static (embedded in the binary) and uses the
// JavaScript client, served as /demo/presence.js.
//
// The client's source of truth is clients/js/src/client.js; static/presence.js
// is a copy made by `go generate ./pkg/demo`, and a test fails when the copy
// is stale. The package imports only the standard library.
package demo
