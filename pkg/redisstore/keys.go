package redisstore

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/presencecluster/presence/pkg/presence"
)

// Keys builds every Redis key and channel name. All of a room's keys share
// the hash tag {<org>::<roomId>}, so one script touches one cluster slot.
type Keys struct {
	Prefix string
	// Shards is the number of deadline index keys (spread over slots in a
	// cluster). Zero means 1.
	Shards int
}

// RoomKeys are the keys and channel of one room.
type RoomKeys struct {
	Tag    string    // "<org>::<roomId>", without braces
	List   [3]string // room, order, profile (the scripts' KEYS; lua/lib.lua)
	Events string
	// Webhooks is the room's webhook outbox (a stream; webhooks.go).
	Webhooks string
}

// Hash is the room's hash (its counters and sessions).
func (rk RoomKeys) Hash() string { return rk.List[0] }

// Order is the room's members in list order.
func (rk RoomKeys) Order() string { return rk.List[1] }

// Profile is the room's members' names, images and data.
func (rk RoomKeys) Profile() string { return rk.List[2] }

// Room returns the keys of a room. They are built in one allocation (every
// heartbeat calls this): the names and the tag are parts of one string.
func (k Keys) Room(r presence.RoomRef) RoomKeys {
	suffixes := [5]string{"room", "order", "profile", "events", "webhooks"}
	head := len(k.Prefix) + 2                         // "<prefix>:{"
	base := head + len(r.Org) + 2 + len(r.RoomID) + 2 // + "<tag>}:"
	var b strings.Builder
	b.Grow(5*base + len("roomorderprofileeventswebhooks"))
	var names [5]string
	var ends [5]int
	for i, suffix := range suffixes {
		b.WriteString(k.Prefix)
		b.WriteString(":{")
		b.WriteString(r.Org)
		b.WriteString("::")
		b.WriteString(r.RoomID)
		b.WriteString("}:")
		b.WriteString(suffix)
		ends[i] = b.Len()
	}
	all := b.String()
	start := 0
	for i := range names {
		names[i], start = all[start:ends[i]], ends[i]
	}
	return RoomKeys{
		Tag:      all[head : base-2],
		List:     [3]string{names[0], names[1], names[2]},
		Events:   names[3],
		Webhooks: names[4],
	}
}

// Tag returns "<org>::<roomId>".
func Tag(r presence.RoomRef) string { return r.Org + "::" + r.RoomID }

// ParseTag splits a tag into its room. Orgs cannot contain ':', so the first
// "::" separates them.
func ParseTag(tag string) (presence.RoomRef, bool) {
	org, room, ok := strings.Cut(tag, "::")
	return presence.RoomRef{Org: org, RoomID: room}, ok
}

// Deadlines returns the deadline index key that holds a room.
func (k Keys) Deadlines(tag string) string {
	return k.DeadlineShard(k.shard(tag))
}

// DeadlineShard returns the deadline index key of shard i: a sorted set of
// room tags scored by (at most) the room's earliest session deadline.
func (k Keys) DeadlineShard(i int) string {
	return k.Prefix + ":deadlines:{" + strconv.Itoa(i) + "}"
}

// NumShards is the number of deadline index keys.
func (k Keys) NumShards() int {
	if k.Shards <= 0 {
		return 1
	}
	return k.Shards
}

func (k Keys) shard(tag string) int {
	n := k.NumShards()
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(tag))
	return int(h.Sum32() % uint32(n))
}

// Users returns the user index bucket of a user (userindex.go): a sorted
// set of "<userId>\n<roomId>". The tag {<org>:<bucket>} cannot be a room's
// ({<org>::<roomId>}): an org has no ':'.
func (k Keys) Users(org, userID string) string {
	return k.Prefix + ":users:" + userTag(org, userID)
}

// userTag is the hash tag of a user's bucket: "{<org>:<bucket>}".
func userTag(org, userID string) string {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return "{" + org + ":" + strconv.Itoa(int(h.Sum32()%userBuckets)) + "}"
}

// UserState returns the user state hash of a user's bucket (users.go), in
// the slot of its index bucket: t:<userId> -> the user's last ticket,
// o:<userId> -> "1" while it is online.
func (k Keys) UserState(org, userID string) string {
	return k.Prefix + ":ustate:" + userTag(org, userID)
}

// UserChannel returns the channel of a user's org-wide changes ("user"
// events), in the slot of its index bucket.
func (k Keys) UserChannel(org, userID string) string {
	return k.Prefix + ":user:" + userTag(org, userID) + ":" + userID
}

// Clock returns the key where nodes that read from a replica write the
// primary's time (unix ms) every ReplicaProbe; read on the replica, it
// tells how far behind the replica is (replica.go).
func (k Keys) Clock() string { return k.Prefix + ":clock" }

// Secret returns the key of the shared token secret.
func (k Keys) Secret() string { return k.Prefix + ":secret" }

// Incarnation returns the key whose loss or change tells that Redis lost
// its data.
func (k Keys) Incarnation() string { return k.Prefix + ":incarnation" }

// Nodes is the sorted set of the nodes' leases: member = a node's
// generation label ("node@region/gen"), score = its lease deadline (unix
// ms), or 0 once it was declared dead and its sessions are being ended.
func (k Keys) Nodes() string { return k.Prefix + ":nodes" }

// NodeRooms is the set of the room tags where a node generation holds
// sessions for its sockets (a superset: rooms it left may stay listed).
func (k Keys) NodeRooms(node string) string { return k.Prefix + ":node:{" + node + "}:rooms" }

// WebhookIndex is the sorted set of the rooms with webhook events to send:
// member = room tag, score = when a sender may take the room next (unix
// ms): at once, the end of a sender's claim, or the end of a backoff. One
// key (one slot), like the token secret.
func (k Keys) WebhookIndex() string { return k.Prefix + ":webhooks:{0}" }

// WebhookTries is the hash of the failed attempts in a row of each room of
// the webhook index (room tag -> count), beside the index (same slot), so
// that any node continues a room's backoff.
func (k Keys) WebhookTries() string { return k.Prefix + ":webhooks:{0}:tries" }

// WebhookFailure is the last failed webhook request (JSON), for operators.
func (k Keys) WebhookFailure() string { return k.Prefix + ":webhooks:{0}:failure" }

// WebhookHeal is the lock that lets one node at a time look for outboxes
// missing from the index.
func (k Keys) WebhookHeal() string { return k.Prefix + ":webhooks:{0}:heal" }

// EventsPattern is the channel pattern of every room's events.
func (k Keys) EventsPattern() string { return k.Prefix + ":{*}:events" }
