-- list.lua: a room's members, online first (join order), then offline, most
-- recently disconnected first: one page. Read-only.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 room epoch ("" for any), 2 limit, 3 "1" for online members only,
--       4 now (ms), 5 offline retention (ms): members offline for longer
--       are not shown (they are forgotten at the room's next change),
--       6 the order score of the position after which the page starts
--       ("" for the first page), 7 that position's userId (see lib.lua
--       list_start), 8 "1" to show invisible members as they are (an admin's
--       includeInvisible)
-- Returns {version, epoch, c, n, t, page size, then per member: userId,
-- order score, sessions, data, profile, privacy}; just {-1} when the epoch is not the
-- room's (the room was removed). The first six are the list's stamp, as
-- list_stamp.lua reads it: the members follow from them. The page size is
-- the members shown from the page's start, up to limit + 1: above limit,
-- more members follow the page (which holds limit). privacy is "" or, for
-- a member offline in the order (lib.lua): the lastDisconnected the others
-- see ("<ms>": an invisible member's, or 0 for a hidden last seen); with
-- ARGV 8 "1", "i<sessions>\t<lastDisconnected>" for an invisible member (its
-- truth) and "" for the others. The flags are read for offline members
-- only: a page of online members costs nothing more.
local head, max = list_head(ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
if not head then
  return {-1}
end
local limit = tonumber(ARGV[2])
local start, size = list_page(ARGV[6] or '', ARGV[7] or '', limit, max)
local out = head
out[6] = size
if size == 0 then
  return out
end
local uids = redis.call('ZRANGE', K_ORDER, start, start + math.min(size, limit) - 1, 'WITHSCORES')
-- One call for the whole page's profiles; session counts are in the scores.
local fields = {}
for i = 1, #uids, 2 do
  fields[#fields + 1] = 'd:' .. uids[i]
  fields[#fields + 1] = 'p:' .. uids[i]
end
local profiles = redis.call('HMGET', K_PROFILE, unpack(fields))
-- The privacy flags of the page's offline members, in one call.
local flags, off = {}, {}
for i = 1, #uids, 2 do
  if score(uids[i + 1]) >= ONLINE_MAX then
    off[#off + 1] = i
    flags[#flags + 1] = 'i:' .. uids[i]
    flags[#flags + 1] = 'h:' .. uids[i]
  end
end
local priv = {}
if #flags > 0 then
  local f = redis.call('HMGET', K_ROOM, unpack(flags))
  for j, i in ipairs(off) do
    local inv, hide = f[2 * j - 1], f[2 * j]
    if ARGV[8] == '1' then
      if inv then
        local k, last = parse_inv(inv)
        priv[i] = 'i' .. int(k) .. '\t' .. int(last)
      end
    elseif inv or hide then
      priv[i] = int(shown_last(score(uids[i + 1]), inv, hide))
    end
  end
end
for k = 1, #uids / 2 do
  out[#out + 1] = uids[2 * k - 1]
  out[#out + 1] = uids[2 * k]
  out[#out + 1] = online_count(uids[2 * k])
  out[#out + 1] = profiles[2 * k - 1] or ''
  out[#out + 1] = profiles[2 * k] or ''
  out[#out + 1] = priv[2 * k - 1] or ''
end
return out
