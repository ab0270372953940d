-- end_user.lua: end all of a user's sessions in the room (sign-out); with
-- forget, also forget the member (remove).
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 userId, 6 "1" to forget the member, 7 not after (unix ms, "0":
--       no bound; lib.lua late): a sign-out that Redis runs later would end
--       the sessions the user started after it
-- Returns 1 when something changed (sessions ended, or the member was
-- forgotten), else 0; then the user, if it went offline (lib.lua changed);
-- or an error "LATE ..." (nothing changed).
if late(ARGV[7]) then
  return redis.error_reply('LATE the sign-out arrived after its bound')
end
local now = tonumber(ARGV[1])
local uid = ARGV[5]
local sc = redis.call('ZSCORE', K_ORDER, uid)
if not sc then
  return {0}
end
local list = online_count(sc) > 0
-- An invisible member (lib.lua): its sessions end, the others see nothing.
local inv = not list and redis.call('HGET', K_ROOM, 'i:' .. uid)
local hidden = inv and parse_inv(inv) > 0
if list or hidden then
  -- The room keeps a count per user, not the ids: find them (one pass over
  -- the room's sessions; sign-out and removal are rare).
  local mine = sessions_where(function(_, _, owner) return owner == uid end)
  for _, sid in ipairs(mine) do
    redis.call('HDEL', K_ROOM, 's:' .. sid)
  end
  if list then
    redis.call('HINCRBY', K_ROOM, 'n', -#mine)
    redis.call('HINCRBY', K_ROOM, 'o', -1)
    changed(uid, now)
  else
    local _, _, shown = parse_inv(inv)
    set_inv(uid, 0, now, shown)
  end
end
if not list and not hidden and ARGV[6] ~= '1' then
  return {0}
end
if ARGV[6] == '1' then
  redis.call('ZREM', K_ORDER, uid)
  redis.call('HDEL', K_PROFILE, 'd:' .. uid, 'p:' .. uid)
  redis.call('HDEL', K_ROOM, 'i:' .. uid, 'h:' .. uid)
  publish(ARGV[2], ARGV[3], 'remove', uid)
elseif list then
  redis.call('ZADD', K_ORDER, int(OFFLINE - now), uid)
  publish(ARGV[2], ARGV[3], 'leave', uid)
end
touch(ARGV[4])
return with_changed({1})
