-- clear_pending.lua: forget that users' org-wide state was pending after a
-- change in this room (lib.lua changed), once a node has stored it: a mark
-- written later than the change the node handled stays.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 the time (ms) of the change the node handled, 2... userIds
-- Returns the number of marks removed.
local n = 0
for i = 2, #ARGV do
  local f = 'u:' .. ARGV[i]
  local t = tonumber(redis.call('HGET', K_ROOM, f))
  if t and t <= tonumber(ARGV[1]) then
    redis.call('HDEL', K_ROOM, f)
    n = n + 1
  end
end
return n
