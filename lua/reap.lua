-- reap.lua: end the room's sessions whose deadline has passed, publishing a
-- leave for each user that went offline. Atomic, so each leave is published
-- exactly once however many nodes reap the same room.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 max sessions to end
-- Returns {ended, earliest remaining deadline (x) or -1, users...}: the
-- users that went offline (lib.lua changed) and those left pending in the
-- room for a second or more (a node died before their second step).
local n = reap_expired(tonumber(ARGV[1]), tonumber(ARGV[5]), ARGV[2], ARGV[3])
if n > 0 then
  touch(ARGV[4])
end
local x = tonumber(redis.call('HGET', K_ROOM, 'x'))
if not x then
  return with_changed({n, -1}, pending_users(tonumber(ARGV[1]), 1000)) -- no deadline left: no sessions, or only held ones
end
return with_changed({n, x}, pending_users(tonumber(ARGV[1]), 1000))
