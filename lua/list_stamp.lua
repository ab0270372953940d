-- list_stamp.lua: the stamp of the list that list.lua would return with the
-- same ARGV, without its members: one HMGET and one ZCOUNT (O(log N)), so
-- that a node answers an unchanged list (304, or its cached page) without
-- reading the page. Read-only.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: as list.lua
-- Returns {version, epoch, c, n, t, members shown} (list.lua's first six),
-- or {-1} when the epoch is not the room's. The members shown are the first
-- min(limit, members not hidden) of the order set: with the rest of the
-- stamp they fix the page, whatever now is.
local head, max = list_head(ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
if not head then
  return {-1}
end
head[6] = math.min(redis.call('ZCOUNT', K_ORDER, '-inf', max), tonumber(ARGV[2]))
return head
