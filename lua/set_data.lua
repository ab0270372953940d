-- set_data.lua: replace a member's data (whole).
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 userId, 6 data JSON ("" clears it), 7 not after (see lib.lua
--       late: a late update would overwrite newer data)
-- Returns {the room version, hooked} (hooked: 1 when the event went to the
-- webhook outbox, lib.lua), or an error "NOT_FOUND ..." when the user is not
-- a member of the room, or "LATE ..." (nothing changed).
if late(ARGV[7]) then
  return redis.error_reply('LATE the update arrived after its bound')
end
local uid = ARGV[5]
if not redis.call('ZSCORE', K_ORDER, uid) then
  return redis.error_reply('NOT_FOUND user is not a member of the room')
end
local field = 'd:' .. uid
local cur = redis.call('HGET', K_PROFILE, field)
if (ARGV[6] == '' and not cur) or cur == ARGV[6] then
  return {tonumber(redis.call('HGET', K_ROOM, 'v')) or 0, 0}
end
if ARGV[6] == '' then
  redis.call('HDEL', K_PROFILE, field)
else
  redis.call('HSET', K_PROFILE, field, ARGV[6])
end
local v = publish(ARGV[2], ARGV[3], 'update', uid)
touch(ARGV[4])
return {v, hooked}
