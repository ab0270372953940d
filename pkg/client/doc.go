// Package client is the Go client of the presence service: Client calls the
// HTTP API (README: HTTP API), and Conn speaks the WebSocket protocol of
// GET /v1/ws (README: GET /v1/ws).
//
// Client is a thin, stateless wrapper: one method per endpoint; a non-2xx
// answer is an *Error carrying the HTTP status and the contract's error code.
//
//	c := &client.Client{BaseURL: "http://localhost:8080"}
//	hb, err := c.Heartbeat(ctx, client.HeartbeatRequest{RoomID: "lobby", SessionID: "tab-1", UserID: "ada"})
//	list, err := c.List(ctx, hb.RoomToken, 0)
//
// Conn is one socket that joins and watches many rooms. Requests (Join,
// Leave, Update, Watch, Unwatch, Ping) wait for their reply, matched by id;
// an "error" reply is an *Error with its Code. For every joined or watched
// room the Conn keeps a view (View): the last snapshot with the server's
// events applied in version order, replaced by each sync. With
// ConnConfig.Reconnect a Conn survives dropped connections and nodes that
// drain (close 1012): it reconnects to the next URL and rejoins its rooms
// with the same sessionIds, which the server resumes without a leave or a
// join. It is built for applications, tests, load generation and fault
// injection: Stats counts reconnects, syncs, events and errors; OnEvent sees
// every message; DropConnection cuts the TCP connection; Abandon vanishes
// without a close frame.
//
//	conn, err := client.Dial(ctx, client.ConnConfig{
//		URLs:      []string{"http://node-a:8080", "http://node-b:8080"},
//		UserID:    "ada",
//		Reconnect: true,
//	})
//	defer conn.Close()
//	joined, err := conn.Join(ctx, "lobby", "tab-1", 0, json.RawMessage(`{"status":"reading"}`))
//	...
//	for _, m := range conn.View("lobby").Members { ... }
//
// The package imports only the standard library, coder/websocket and the
// types of pkg/presence.
package client
