// Package auth verifies the JWTs that callers of the presence service present.
//
// A [Verifier] checks a token's signature against an HS256 shared secret, a
// JSON Web Key Set read from a file, or a key set fetched (and kept fresh)
// from a URL, then checks its claims and turns them into a
// [presence.Identity]. Every refusal is a [presence.Error] with code
// [presence.EUNAUTHORIZED].
//
// The package also checks the static admin bearer token
// ([Verifier.IsAdminToken]).
package auth
