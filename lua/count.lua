-- count.lua: a room's version, online users and live sessions, in O(1).
-- Read-only.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: none
-- Returns {version, online, sessions}.
local meta = redis.call('HMGET', K_ROOM, 'v', 'o', 'n')
return {tonumber(meta[1]) or 0, tonumber(meta[2]) or 0, tonumber(meta[3]) or 0}
