-- list.lua: a room's members, online first (join order), then offline, most
-- recently disconnected first. Read-only.
-- KEYS: the five room keys (see lib.lua)
-- ARGV: 1 room epoch ("" for any), 2 limit, 3 "1" for online members only,
--       4 now (ms), 5 offline retention (ms): members offline for longer
--       are not shown (they are forgotten at the room's next change)
-- Returns {version, then per member: userId, order score, sessions, data,
-- profile}; just {0} when the epoch is not the room's (the room was removed).
local meta = redis.call('HMGET', K_ROOM, 'e', 'v')
if ARGV[1] ~= '' and (meta[1] or '0') ~= ARGV[1] then
  return {0}
end
local limit = tonumber(ARGV[2])
local max = OFFLINE - (tonumber(ARGV[4]) - tonumber(ARGV[5]))
if ARGV[3] == '1' then
  max = ONLINE_MAX
end
local uids = redis.call('ZRANGEBYSCORE', K_ORDER, '-inf', '(' .. int(max), 'WITHSCORES', 'LIMIT', 0, limit)
local out = {tonumber(meta[2]) or 0}
for i = 1, #uids, 2 do
  local uid = uids[i]
  local p = redis.call('HMGET', K_PROFILE, 'd:' .. uid, 'p:' .. uid)
  out[#out + 1] = uid
  out[#out + 1] = uids[i + 1]
  out[#out + 1] = count_sessions(redis.call('HGET', K_ROOM, 'u:' .. uid))
  out[#out + 1] = p[1] or ''
  out[#out + 1] = p[2] or ''
end
return out
