-- end_user.lua: end all of a user's sessions in the room (sign-out); with
-- forget, also forget the member (remove).
-- KEYS: the five room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 userId, 6 "1" to forget the member
-- Returns 1 when something changed (sessions ended, or the member was
-- forgotten), else 0.
local now = tonumber(ARGV[1])
local uid = ARGV[5]
if not redis.call('ZSCORE', K_ORDER, uid) then
  return 0
end
local field = 'u:' .. uid
local list = redis.call('HGET', K_ROOM, field)
if list then
  for _, sid in ipairs(split(list)) do
    redis.call('HDEL', K_SESS, sid)
    redis.call('ZREM', K_SESSIONS, sid)
  end
  redis.call('HDEL', K_ROOM, field)
  redis.call('HINCRBY', K_ROOM, 'o', -1)
end
if not list and ARGV[6] ~= '1' then
  return 0
end
if ARGV[6] == '1' then
  redis.call('ZREM', K_ORDER, uid)
  redis.call('HDEL', K_PROFILE, 'd:' .. uid, 'p:' .. uid)
  publish(ARGV[2], ARGV[3], 'remove', uid)
elseif list then
  redis.call('ZADD', K_ORDER, int(OFFLINE - now), uid)
  publish(ARGV[2], ARGV[3], 'leave', uid)
end
touch(ARGV[4])
return 1
