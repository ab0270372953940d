// Package httpapi serves the presence API over HTTP (Echo) and WebSockets
// (coder/websocket): request decoding and validation, authentication of the
// caller, the mapping of coded errors to statuses, CORS, health and metrics.
//
// A WebSocket is a frame codec and socket plumbing around the real-time core
// (presence.Realtime, presence.Conn): the reader decodes a client frame and
// calls the core; the writer encodes the replies and the updates the core
// pushes, in the order its presence.Sequencer decides.
//
// Heartbeat-only keep-alive connections may be served by the Server's Lane
// (NewLane), a net.Listener in front of http.Server: it answers plain
// `POST /v1/heartbeat` requests itself, with the same handler and the same
// bytes as net/http, and hands every other connection to net/http.
//
// It depends on the presence core only; the Store, the real-time core and
// the JWT verifier come in from package node, which wires a node.
package httpapi
