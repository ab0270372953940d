-- heartbeat.lua: create or refresh a session; optionally replace the
-- member's profile and data in the same step.
-- KEYS: the three room keys (see lib.lua); 4, with one Redis (not a
--       Cluster): the room's deadline index key
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 offline retention (ms), 6 sessionId, 7 userId, 8 deadline (ms), or
--          HELD for a session that lives by its node's lease (node in ARGV 10),
--       9 epoch for a new session, 10 node label,
--       11 "1" to set the profile, 12 profile "<name>\t<image>",
--       13 "1" to set the data, 14 data JSON ("" clears it),
--       15 "1" for a keep-alive of a node-owned session: if the session is
--          gone, do not create it again; return {roomEpoch, "", -1} (the
--          node then tells an ended session from a Redis that lost its data);
--          "2" for a node releasing a session it held (ARGV 10 is the
--          holder): only the deadline changes, and only if that node still
--          holds it,
--       16 "1" to end the room's expired sessions first ("0" right after a
--          store outage, so the nodes' keep-alives can refresh theirs),
--       17 not after (unix ms by the node's clock, "0": no bound): a call
--          that Redis runs later than this (delayed in the network, or
--          retried after its caller gave up) changes nothing and fails with
--          LATE, so that it never sets a session's deadline back (lib.lua
--          late)
--       18 the room's tag (its member in the deadline index),
--       19 invisible: "1" on, "0" off, "" keep the member's setting,
--       20 hideLastSeen: the same (lib.lua set_privacy; a keep-alive
--          passes "" for both and reads nothing more)
-- A room's epoch is "0" until the room is removed (remove_room.lua), so the
-- room tokens clients hold survive a Redis that lost its data.
-- Returns {roomEpoch, sessionEpoch, version, lowered, created, hooked, users...}, or an error
-- "CONFLICT ..." when the sessionId belongs to another user. lowered is 1
-- when the session's deadline is now the room's earliest and earlier than
-- the room's earliest before (then the deadline index may need lowering);
-- created is 1 when the session was created (the user index is written);
-- hooked is 1 when an event went to the webhook outbox (lib.lua). The reply
-- goes on with the users that came online or went offline in the room (this
-- heartbeat's join, leaves of expired sessions; lib.lua changed).
-- KEYS: the room's three keys; KEYS[4] the webhook outbox ("" when webhooks
-- are off and KEYS[5] follows); KEYS[5], with one Redis, the deadline index:
-- the script lowers it itself, in the same atomic step, and lowered is 0 (a
-- second round trip from a far region could be held in a cut, and the room
-- would stay out of the index, never reaped, meanwhile).
if late(ARGV[17]) then
  return redis.error_reply('LATE the heartbeat arrived after its bound')
end
local now = tonumber(ARGV[1])
local channel, cmd = ARGV[2], ARGV[3]
local sid, uid = ARGV[6], ARGV[7]
local field = 's:' .. sid
local deadline = nil -- held
if not is_held(ARGV[8]) then
  deadline = tonumber(ARGV[8])
end

-- index lowers the deadline index when x was lowered and the index is one
-- of this script's keys; it returns what is left for the node to lower.
local function index(lowered)
  if lowered and KEYS[5] then
    redis.call('ZADD', KEYS[5], 'LT', int(deadline), ARGV[18])
    return 0
  end
  return lowered and 1 or 0
end

-- A node lets go of a session it held for a socket that was lost: the
-- session gets its ordinary deadline, unless another node (where the client
-- resumed) or the client itself has taken it over meanwhile.
if ARGV[15] == '2' then
  local v = redis.call('HGET', K_ROOM, field)
  local version = tonumber(redis.call('HGET', K_ROOM, 'v')) or 0
  if not v then
    return {'', '', -1, 0, 0, 0}
  end
  local e, node, owner, d = parse_sess(v)
  if node == ARGV[10] and d == nil and deadline then
    redis.call('HSET', K_ROOM, field, sess_value(deadline, e, node, owner))
    return {'', e, version, index(lower_x(deadline)), 0, 0}
  end
  return {'', e, version, 0, 0, 0}
end

-- What a keep-alive needs of the room hash, in one read: x (earliest
-- deadline), e (room epoch), the session, v (version), t (last touch), and
-- the member's privacy flags i: and h: (lib.lua). Absent fields are false.
local function read_room()
  return redis.call('HMGET', K_ROOM, 'x', 'e', field, 'v', 't', 'i:' .. uid, 'h:' .. uid)
end
local h = read_room()
local sess = h[3]

-- A node-owned session whose socket is still open is alive even if its
-- deadline passed (the store was unreachable meanwhile): its owner vouches
-- for it, so it is refreshed before the room's expired sessions are ended.
if ARGV[15] == '1' and sess then
  local e, node, owner = parse_sess(sess)
  sess = sess_value(deadline, e, node, owner)
  redis.call('HSET', K_ROOM, field, sess)
end

-- The room's expired sessions are ended first (only when x is due; they
-- may include this one, and change v and x: read the room again then).
local x = tonumber(h[1])
if ARGV[16] == '1' and x and x <= now then
  reap_expired(now, 64, channel, cmd)
  h = read_room()
  sess = h[3]
end

local epoch = h[2] or '0'

local sepoch, event
local created = 0
if sess then
  local _, _, owner = parse_sess(sess)
  if owner ~= uid then
    return redis.error_reply('CONFLICT sessionId belongs to another user')
  end
elseif ARGV[15] == '1' then
  return with_changed({epoch, '', -1, 0, 0, hooked})
end

-- Privacy flags first: a member that turns invisible with a new session
-- is never seen joining (lib.lua set_privacy).
local inv = h[6]
if ARGV[19] ~= '' or ARGV[20] ~= '' then
  event, inv = set_privacy(uid, inv, h[7], ARGV[19], ARGV[20], now)
end

if sess then
  local e, node, _, d = parse_sess(sess)
  sepoch = e
  if node ~= ARGV[10] or d ~= deadline then
    redis.call('HSET', K_ROOM, field, sess_value(deadline, e, ARGV[10], uid))
  end
else
  local joined = add_session(uid, now, inv)
  if joined == nil then
    return redis.error_reply('CONFLICT the user has too many sessions in this room')
  end
  sepoch = ARGV[9]
  created = 1
  redis.call('HSET', K_ROOM, field, sess_value(deadline, sepoch, ARGV[10], uid))
  if joined then
    event = 'join'
  end
end
local lowered = index(deadline and lower_x(deadline, h[1]))

local changed = false
if ARGV[11] == '1' and redis.call('HGET', K_PROFILE, 'p:' .. uid) ~= ARGV[12] then
  redis.call('HSET', K_PROFILE, 'p:' .. uid, ARGV[12])
  changed = true
end
if ARGV[13] == '1' then
  local cur = redis.call('HGET', K_PROFILE, 'd:' .. uid)
  if ARGV[14] == '' then
    if cur then
      redis.call('HDEL', K_PROFILE, 'd:' .. uid)
      changed = true
    end
  elseif cur ~= ARGV[14] then
    redis.call('HSET', K_PROFILE, 'd:' .. uid, ARGV[14])
    changed = true
  end
end

local version
if event then
  version = publish(channel, cmd, event, uid)
elseif changed then
  version = publish(channel, cmd, 'update', uid)
else
  version = tonumber(h[4]) or 0
end

-- A plain keep-alive changes nothing: the keys' time to live (retention +
-- the longest session timeout) and the pruning of old members only need
-- doing when something changed, or once a minute. (Every key a heartbeat
-- creates comes with a join or an update, so no key is left without a TTL.)
if event or changed or now - (tonumber(h[5]) or 0) > 60000 then
  prune(now, tonumber(ARGV[5]), channel, cmd)
  redis.call('HSET', K_ROOM, 't', now)
  touch(ARGV[4])
end
return with_changed({epoch, sepoch, version, lowered, created, hooked})
