package presence

import (
	"cmp"
	"slices"
)

// The room order is the order of a room's list (RoomList.Members, the
// snapshots and views of the clients): online members first, in the order
// they came online, then offline members, most recently disconnected first;
// ties by userId (byte order, as Redis orders equal scores).
//
// Online members are ordered by an "online sequence": any number that grows
// with each coming online (the store's join sequence; a client's count of
// the joins it saw). The store keeps the order as one number per member, its
// order score (OrderScore); the clients (pkg/client, clients/js) keep it
// with CompareMembers.

// CompareMembers compares two members in the room order: negative if a comes
// first, positive if b does, 0 for the same userId. onlineSeqA and onlineSeqB
// are the online sequences of a and b (not read for an offline member).
func CompareMembers(a, b Member, onlineSeqA, onlineSeqB int64) int {
	switch {
	case a.Online != b.Online:
		if a.Online {
			return -1
		}
		return 1
	case a.Online && onlineSeqA != onlineSeqB:
		return cmp.Compare(onlineSeqA, onlineSeqB)
	case !a.Online && a.LastDisconnected != b.LastDisconnected:
		return cmp.Compare(b.LastDisconnected, a.LastDisconnected)
	}
	return cmp.Compare(a.UserID, b.UserID)
}

// SortMembers sorts ms in the room order. onlineSeq gives the online
// sequence of an online member (it is called for online members only).
func SortMembers(ms []Member, onlineSeq func(userID string) int64) {
	seq := func(m *Member) int64 {
		if m.Online {
			return onlineSeq(m.UserID)
		}
		return 0
	}
	slices.SortFunc(ms, func(a, b Member) int {
		return CompareMembers(a, b, seq(&a), seq(&b))
	})
}

// Order scores: the room order as one number per member, which the store
// keeps in a sorted set (lua/lib.lua writes them): ascending scores, ties by
// userId, are the room order. An online member scores its online sequence,
// below OrderScoreOnlineMax (the store's is join sequence × 1024 + live
// sessions); an offline one scores OrderScoreOffline - LastDisconnected (at
// least OrderScoreOnlineMax for any LastDisconnected in unix ms).
const (
	OrderScoreOnlineMax = 1_000_000_000_000_000
	OrderScoreOffline   = 9_000_000_000_000_000
)

// OrderScore returns the order score of m; onlineSeq is its online sequence
// (in [0, OrderScoreOnlineMax); not read when m is offline).
func OrderScore(m Member, onlineSeq int64) int64 {
	if m.Online {
		return onlineSeq
	}
	return OrderScoreOffline - m.LastDisconnected
}

// MemberFromScore returns the member userID with Online and LastDisconnected
// as its order score says (the inverse of OrderScore; other fields zero).
func MemberFromScore(userID string, score int64) Member {
	m := Member{UserID: userID, Online: score < OrderScoreOnlineMax}
	if !m.Online {
		m.LastDisconnected = OrderScoreOffline - score
	}
	return m
}
