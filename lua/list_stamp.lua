-- list_stamp.lua: the stamp of the list that list.lua would return with the
-- same ARGV, without its members: one HMGET and ZCOUNTs (O(log N)), so
-- that a node answers an unchanged list (304, or its cached page) without
-- reading the page. Read-only.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: as list.lua
-- Returns {version, epoch, c, n, t, page size} (list.lua's first six),
-- or {-1} when the epoch is not the room's. The page size is the number of
-- members not hidden from the page's start on, up to limit + 1: with the
-- rest of the stamp (and the position) it fixes the page and whether more
-- follow, whatever now is.
local head, max = list_head(ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
if not head then
  return {-1}
end
local _, size = list_page(ARGV[6] or '', ARGV[7] or '', tonumber(ARGV[2]), max)
head[6] = size
return head
