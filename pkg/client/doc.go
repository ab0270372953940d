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
// Leave, Update, Watch, WatchCount, Unwatch, Ping) wait for their reply, matched by id;
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
// # Views
//
// A view is the room's last snapshot (joined, watching, sync) with the
// room's presence events applied in version order, each version once, in
// the room order (presence.SortMembers: online members in the order they
// came online, then offline ones, most recently disconnected first, ties by
// userId). The server sends a socket its events in order and a sync when it
// missed some, so the rest of this rule is a safety net. The JavaScript
// client (clients/js) follows the same rule (and, unlike a Conn, asks for a
// snapshot itself when events stay held for its gapTimeout, 5 s):
//
//   - An event at the view's version + 1 is applied (a reset empties the
//     view, a remove drops the member, an event of an unknown kind or
//     without a member only moves the version), then the held events that
//     follow it, in order.
//   - An event further ahead is held, until the missing versions arrive or
//     a snapshot comes. At most 1000 events are held per room: one more
//     drops them all (and itself), and the view waits for the server's sync.
//   - An event at or below the view's version, or of a version already
//     held, is ignored.
//   - A snapshot replaces the view whatever its version; the held events at
//     or below its version are dropped, the ones right after it applied.
//   - An event of a room without a view (no snapshot yet) is ignored: the
//     snapshot has it.
//
// The package imports only the standard library, coder/websocket and
// pkg/presence (its types and the room order).
package client
