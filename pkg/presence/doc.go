// Package presence is the domain core of the presence cluster: the vocabulary
// (Member, Event, Identity), the coded Error type, the validation rules for
// ids, the room and session tokens, and the Service that applies the presence
// rules through a Store.
//
// It imports only the standard library. Adapters live in sibling packages:
// redisstore (the Store on Redis, with the Lua scripts), httpapi (Echo and
// WebSockets) and auth (JWT verification with jwx).
package presence
