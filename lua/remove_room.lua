-- remove_room.lua: forget a room. Its version keeps counting and it gets a
-- new epoch, so old room tokens list nothing and versions never go back.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 the room's new epoch, 6 not after (unix ms, "0": no bound;
--       lib.lua late): a removal that Redis runs later would forget the
--       members who joined after it
-- Returns {the new version, users...}: the users that were online (they
-- went offline; lib.lua changed), or an error "LATE ..." (nothing changed).
if late(ARGV[6]) then
  return redis.error_reply('LATE the removal arrived after its bound')
end
local v = (tonumber(redis.call('HGET', K_ROOM, 'v')) or 0) + 1
local online = redis.call('ZRANGEBYSCORE', K_ORDER, '-inf', '(' .. int(ONLINE_MAX))
redis.call('DEL', K_ROOM, K_ORDER, K_PROFILE)
redis.call('HSET', K_ROOM, 'v', v, 'e', ARGV[5])
redis.call('PEXPIRE', K_ROOM, ARGV[4])
redis.call(ARGV[3], ARGV[2], '{"version":' .. int(v) .. ',"event":"reset","userId":""}')
for _, uid in ipairs(online) do
  changed(uid, tonumber(ARGV[1]))
end
return with_changed({v})
