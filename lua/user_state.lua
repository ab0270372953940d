-- user_state.lua: store a user's org-wide state (online or not) and publish
-- a change of it, if this computation is the latest (second step after a
-- room script; pkg/redisstore/users.go).
-- KEYS: 1 the user state hash of the user's bucket (the slot of the user's
--       index bucket): t:<userId> -> the user's last ticket, o:<userId> ->
--       "1" while the user is online (absent: offline)
-- ARGV: 1 userId, 2 this computation's ticket (HINCRBY t:<userId> 1, taken
--       before the rooms were read), 3 "1" online / "0" offline, 4 channel,
--       5 publish command, 6 the event JSON, 7 key ttl (ms)
-- A computation whose ticket is not the user's last one changes nothing: a
-- later one read the rooms after it and will store a fresher state.
-- Returns 1 when the state changed (published), 0 when it was stored
-- unchanged, -1 when a later computation is under way.
local uid = ARGV[1]
if tonumber(ARGV[2]) < (tonumber(redis.call('HGET', KEYS[1], 't:' .. uid)) or 0) then
  return -1
end
local was = redis.call('HGET', KEYS[1], 'o:' .. uid) == '1'
local now = ARGV[3] == '1'
if now then
  redis.call('HSET', KEYS[1], 'o:' .. uid, '1')
else
  redis.call('HDEL', KEYS[1], 'o:' .. uid)
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if was ~= now then
  redis.call(ARGV[5], ARGV[4], ARGV[6])
  return 1
end
return 0
