// Package httpapi serves the presence API over HTTP (Echo) and WebSockets
// (coder/websocket): request decoding and validation, authentication of the
// caller, the mapping of coded errors to statuses, CORS, health and metrics.
//
// It depends on the presence core only; the Store and the JWT verifier come
// in through interfaces, wired by cmd/presenced.
package httpapi
