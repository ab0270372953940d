-- reap.lua: end the room's sessions whose deadline has passed, publishing a
-- leave for each user that went offline. Atomic, so each leave is published
-- exactly once however many nodes reap the same room.
-- KEYS: the five room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 max sessions to end
-- Returns {ended, earliest remaining deadline or -1}.
local n = reap_expired(tonumber(ARGV[1]), tonumber(ARGV[5]), ARGV[2], ARGV[3])
if n > 0 then
  touch(ARGV[4])
end
local first = redis.call('ZRANGE', K_SESSIONS, 0, 0, 'WITHSCORES')
if #first == 0 or is_held(first[2]) then
  return {n, -1} -- no deadline left: only sessions held by nodes' leases
end
return {n, tonumber(first[2])}
