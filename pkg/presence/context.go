package presence

import (
	"context"
	"path"
)

// Identity is the caller of a request, as established by authentication.
type Identity struct {
	Org    string
	UserID string // empty for an admin
	Name   string // from the JWT "name" claim; may be empty
	Image  string // from the JWT "picture" claim; may be empty
	Admin  bool   // holder of the admin token (or anyone when auth is off)
	// Rooms, when non-nil, limits the rooms the caller may join, watch or
	// list: path.Match glob patterns such as "doc-*".
	Rooms []string
	// Verified is true when the identity comes from a verified JWT. When false
	// (auth off), the request body names the user.
	Verified bool
}

// MayAccessRoom reports whether the identity's rooms claim admits roomID.
func (id *Identity) MayAccessRoom(roomID string) bool {
	if id == nil || id.Rooms == nil || id.Admin {
		return true
	}
	for _, p := range id.Rooms {
		if ok, _ := path.Match(p, roomID); ok {
			return true
		}
	}
	return false
}

type identityKey struct{}

// NewContextWithIdentity returns a copy of ctx that carries id.
func NewContextWithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFromContext returns the identity in ctx, or nil.
func IdentityFromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}
