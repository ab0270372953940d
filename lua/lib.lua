-- lib.lua: helpers shared by every room script. It is prepended to each
-- script when the script is loaded, so a script stays one atomic unit.
--
-- Every room script takes the same three KEYS, all under the room's hash tag
-- {<org>::<roomId>} so that a script touches one Redis Cluster slot:
--   KEYS[1] room     hash: v (version), q (join sequence), e (room epoch),
--                    o (online users), n (live sessions), c (changes of a
--                    member's session count that are no join or leave: a
--                    list shows the counts, the version does not count
--                    them), t (when the keys' TTL was last set), x (at
--                    most the earliest deadline of the room's sessions;
--                    absent: none has a deadline),
--                    s:<sessionId> -> "<deadline>\t<epoch>\t<node>\t<userId>":
--                    deadline in unix ms, or H for a session held by a node's
--                    open WebSocket (it lives by that node's lease; <node> is
--                    the holding node generation, else empty)
--   KEYS[2] order    zset: userId -> online: join sequence × PER + live
--                    sessions (< ONLINE_MAX); offline: OFFLINE - lastDisconnected.
--                    It holds what the others see: an invisible member is
--                    placed as an offline one (OFFLINE - when it went
--                    invisible or offline, or joined invisible)
--                    Privacy (a member's flags, present only when set):
--                    i:<userId> -> "<sessions>\t<last>\t<shown>" while the
--                    member is invisible: its live sessions (counted
--                    here, not in its order score, o or n), its real
--                    lastDisconnected, and the one the others see;
--                    h:<userId> -> "1" while it hides its last seen
--   KEYS[3] profile  hash: p:<userId> -> "<name>\t<image>", d:<userId> -> data JSON
-- A session is stored once (one hash field): the room is reaped by scanning
-- its sessions when x is due, which the deadline index tells the reaper.
-- Time is always passed in ARGV, never read here.
--
-- Webhooks on: a fourth key and two more ARGV, after the script's own
-- (a script that takes a fifth key gets "" as its fourth when they are off):
--   KEYS[4] webhooks  stream: the room's outbox, one entry (field e: the
--                     event JSON as published) per event to send; its
--                     auto id's time is when the event happened
--   ARGV[#ARGV - 1]   the outbox's time to live (ms): the webhook max age
--                     and a margin
--   ARGV[#ARGV]       the event names to keep, comma-separated
--                     ("join,leave")
-- publish() appends to it in the same atomic step as the change, and sets
-- hooked to 1, which heartbeat.lua returns (the node then indexes the room
-- for its senders).

local K_ROOM, K_ORDER, K_PROFILE, K_HOOKS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if K_HOOKS == '' then
  K_HOOKS = nil -- webhooks off, and the script takes a fifth key
end
local HOOK_TTL, HOOK_EVENTS
if K_HOOKS then
  HOOK_TTL, HOOK_EVENTS = ARGV[#ARGV - 1], ',' .. ARGV[#ARGV] .. ','
end
local hooked = 0
local OFFLINE = 9000000000000000
local ONLINE_MAX = 1000000000000000
-- HELD is the deadline of a session held by a node's open WebSocket: it has
-- none of its own. (Go passes 4000000000000000 for it.)
local HELD = 4000000000000000

-- late tells whether Redis runs a write after its "not after" bound
-- (unix ms by the node's clock; 0 or absent: no bound): a call delayed in
-- the network, or retried after its caller gave up, must change nothing.
-- The one place a script reads the server's clock.
local function late(not_after)
  not_after = tonumber(not_after) or 0
  if not_after <= 0 then
    return false
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > not_after
end

-- score reads a sorted set score. Redis replies "4000000000000000"; the
-- embedded store may reply "4e+15", which its Lua's tonumber cannot read.
local function score(s)
  local n = tonumber(s)
  if n == nil and type(s) == 'string' then
    local m, e = string.match(s, '^([%d%.]+)e%+?(%d+)$')
    if m then
      n = tonumber(m) * 10 ^ tonumber(e)
    end
  end
  return n
end

-- is_held reports whether a sessions score (a string, number or nil) is
-- HELD.
local function is_held(s)
  local n = s and score(s)
  return n ~= nil and n >= HELD
end

-- int formats an integer exactly (tostring would use %.14g).
local function int(n)
  return string.format('%d', n)
end

-- An online member's order score is its join sequence × PER plus its live
-- session count (1 to PER - 1): the order of join sequences is kept, and the
-- count costs no field of its own.
local PER = 1024

-- online_count returns the live session count that an order score holds (0
-- for an offline member or none).
local function online_count(sc)
  sc = sc and score(sc)
  if sc and sc < ONLINE_MAX then
    return sc % PER
  end
  return 0
end

-- CHANGED lists the users that came online or went offline in this room
-- during this script (changed), in order: the scripts return it so that
-- the node updates the users' org-wide state (a second step, in the
-- user's slot: pkg/redisstore/users.go). Each such user is also marked
-- pending in the room (u:<userId> -> now) until a node has done that step,
-- so that a reaper does it if the node died in between.
local CHANGED = {}
local function changed(uid, now)
  CHANGED[#CHANGED + 1] = uid
  redis.call('HSET', K_ROOM, 'u:' .. uid, int(now))
end

-- parse_inv splits an i:<userId> value (an invisible member): its live
-- sessions, its real lastDisconnected, and the one the others see.
local function parse_inv(v)
  local a = string.find(v, '\t', 1, true)
  local b = string.find(v, '\t', a + 1, true)
  return tonumber(string.sub(v, 1, a - 1)), tonumber(string.sub(v, a + 1, b - 1)), tonumber(string.sub(v, b + 1))
end

-- set_inv stores an invisible member's i:<userId> value.
local function set_inv(uid, k, last, shown)
  local v = int(k) .. '\t' .. int(last) .. '\t' .. int(shown)
  redis.call('HSET', K_ROOM, 'i:' .. uid, v)
  return v
end

-- add_session counts one more live session of uid. It returns true when the
-- user came online (a join), false otherwise, nil when the user has PER - 1
-- sessions in the room already. inv is the member's i: value when it is
-- invisible: the session is counted there, the others see nothing (a member
-- new to the room is placed as an offline one).
local function add_session(uid, now, inv)
  if inv then
    local k, last, shown = parse_inv(inv)
    if k >= PER - 1 then
      return nil
    end
    if k == 0 then
      redis.call('ZADD', K_ORDER, 'NX', int(OFFLINE - now), uid)
    end
    set_inv(uid, k + 1, last, shown)
    return false
  end
  local n = online_count(redis.call('ZSCORE', K_ORDER, uid))
  if n >= PER - 1 then
    return nil
  end
  redis.call('HINCRBY', K_ROOM, 'n', 1)
  if n > 0 then
    redis.call('ZINCRBY', K_ORDER, 1, uid)
    redis.call('HINCRBY', K_ROOM, 'c', 1)
    return false
  end
  redis.call('ZADD', K_ORDER, int(redis.call('HINCRBY', K_ROOM, 'q', 1) * PER + 1), uid)
  redis.call('HINCRBY', K_ROOM, 'o', 1)
  changed(uid, now)
  return true
end

-- drop_session counts one fewer live session of uid; when it was the last,
-- the user goes offline now (returns true: a leave). An invisible member's
-- session is counted down in its i: value: the others see nothing.
local function drop_session(uid, now)
  local n = online_count(redis.call('ZSCORE', K_ORDER, uid))
  if n == 0 then
    local inv = redis.call('HGET', K_ROOM, 'i:' .. uid)
    if inv then
      local k, last, shown = parse_inv(inv)
      if k > 1 then
        set_inv(uid, k - 1, last, shown)
      elseif k == 1 then
        set_inv(uid, 0, now, shown)
      end
    else
      redis.call('HINCRBY', K_ROOM, 'n', -1)
    end
    return false
  end
  redis.call('HINCRBY', K_ROOM, 'n', -1)
  if n > 1 then
    redis.call('ZINCRBY', K_ORDER, -1, uid)
    redis.call('HINCRBY', K_ROOM, 'c', 1)
    return false
  end
  redis.call('ZADD', K_ORDER, int(OFFLINE - now), uid)
  redis.call('HINCRBY', K_ROOM, 'o', -1)
  changed(uid, now)
  return true
end

-- shown_last returns the lastDisconnected the others see of an offline
-- (to them) member whose order score is sc, given its i: and h: values.
local function shown_last(sc, inv, hide)
  if hide then
    return 0
  end
  if inv then
    local _, _, shown = parse_inv(inv)
    return shown
  end
  return OFFLINE - sc
end

-- set_privacy applies a heartbeat's privacy flags (want_inv, want_hide:
-- "1" on, "0" off, "" keep) to a member whose i: and h: values are inv and
-- hide. It returns the event the change makes (turning invisible while
-- online: a leave; visible again with live sessions: a join; a member new
-- to the room that arrives invisible, or hiding or showing the last seen
-- of a member offline to the others: an update) or
-- nil, and the member's i: value after it (false: visible).
local function set_privacy(uid, inv, hide, want_inv, want_hide, now)
  local event
  if (want_hide == '1') ~= (hide and true or false) and want_hide ~= '' then
    if want_hide == '1' then
      redis.call('HSET', K_ROOM, 'h:' .. uid, '1')
    else
      redis.call('HDEL', K_ROOM, 'h:' .. uid)
    end
    local sc = score(redis.call('ZSCORE', K_ORDER, uid))
    if sc and sc >= ONLINE_MAX and shown_last(sc, inv, false) ~= 0 then
      event = 'update'
    end
  end
  if want_inv == '1' and not inv then
    local sc = score(redis.call('ZSCORE', K_ORDER, uid))
    if sc and sc < ONLINE_MAX then
      local k = sc % PER
      redis.call('ZADD', K_ORDER, int(OFFLINE - now), uid)
      redis.call('HINCRBY', K_ROOM, 'o', -1)
      redis.call('HINCRBY', K_ROOM, 'n', -k)
      changed(uid, now)
      inv = set_inv(uid, k, 0, now)
      event = 'leave'
    elseif sc then
      inv = set_inv(uid, 0, OFFLINE - sc, OFFLINE - sc)
    else
      -- New to the room: the others never saw it online. It appears as an
      -- offline member (lastDisconnected 0) once add_session places it:
      -- a change of the list like any other, an update.
      inv = set_inv(uid, 0, 0, 0)
      event = 'update'
    end
  elseif want_inv == '0' and inv then
    local k, last = parse_inv(inv)
    redis.call('HDEL', K_ROOM, 'i:' .. uid)
    inv = false
    if k > 0 then
      redis.call('ZADD', K_ORDER, int(redis.call('HINCRBY', K_ROOM, 'q', 1) * PER + k), uid)
      redis.call('HINCRBY', K_ROOM, 'o', 1)
      redis.call('HINCRBY', K_ROOM, 'n', k)
      changed(uid, now)
      event = 'join'
    elseif last > 0 then
      redis.call('ZADD', K_ORDER, 'XX', int(OFFLINE - last), uid)
    end
  end
  return event, inv
end

-- parse_sess splits an s:<sessionId> value into epoch, node, userId and
-- deadline (a number, or nil for a held session).
local function parse_sess(v)
  local a = string.find(v, '\t', 1, true)
  local b = string.find(v, '\t', a + 1, true)
  local c = string.find(v, '\t', b + 1, true)
  local d = string.sub(v, 1, a - 1)
  return string.sub(v, a + 1, b - 1), string.sub(v, b + 1, c - 1), string.sub(v, c + 1), tonumber(d)
end

-- sess_value builds an s:<sessionId> value; deadline nil means held.
local function sess_value(deadline, epoch, node, uid)
  local d = 'H'
  if deadline then
    d = int(deadline)
  end
  return d .. '\t' .. epoch .. '\t' .. node .. '\t' .. uid
end

-- lower_x makes x at most deadline; it reports whether x changed. known,
-- when given, is x as the caller read it (false: absent), which saves the
-- read.
local function lower_x(deadline, known)
  if known == nil then
    known = redis.call('HGET', K_ROOM, 'x')
  end
  local x = tonumber(known)
  if not x or deadline < x then
    redis.call('HSET', K_ROOM, 'x', int(deadline))
    return true
  end
  return false
end

-- member_json renders a member as the JSON the API shows (what the others
-- see: an invisible member offline, a hidden last seen 0).
local function member_json(uid)
  local sc = score(redis.call('ZSCORE', K_ORDER, uid))
  local sessions = online_count(sc)
  local last = 0
  if sc and sc >= ONLINE_MAX then
    local f = redis.call('HMGET', K_ROOM, 'i:' .. uid, 'h:' .. uid)
    last = shown_last(sc, f[1], f[2])
  end
  local out = '{"userId":' .. cjson.encode(uid) .. ',"online":' .. (sessions > 0 and 'true' or 'false')
    .. ',"lastDisconnected":' .. int(last) .. ',"sessions":' .. sessions
  local p = redis.call('HMGET', K_PROFILE, 'd:' .. uid, 'p:' .. uid)
  if p[1] then
    out = out .. ',"data":' .. p[1]
  end
  if p[2] then
    local tab = string.find(p[2], '\t', 1, true)
    local name, image = string.sub(p[2], 1, tab - 1), string.sub(p[2], tab + 1)
    if name ~= '' then
      out = out .. ',"name":' .. cjson.encode(name)
    end
    if image ~= '' then
      out = out .. ',"image":' .. cjson.encode(image)
    end
  end
  return out .. '}'
end

-- publish bumps the room version and publishes one event about uid. node,
-- when given, names the dead node generation whose session ended (reap_node).
local function publish(channel, cmd, event, uid, node)
  local v = redis.call('HINCRBY', K_ROOM, 'v', 1)
  local extra = ''
  if node then
    extra = ',"node":' .. cjson.encode(node)
  end
  local body = '{"version":' .. int(v) .. ',"event":"' .. event .. '","userId":' .. cjson.encode(uid)
    .. ',"member":' .. member_json(uid)
  redis.call(cmd, channel, body .. extra .. '}')
  if K_HOOKS and string.find(HOOK_EVENTS, ',' .. event .. ',', 1, true) then
    redis.call('XADD', K_HOOKS, '*', 'e', body .. '}')
    redis.call('PEXPIRE', K_HOOKS, HOOK_TTL)
    hooked = 1
  end
  return v
end

-- end_session removes one session. It returns the session's user and whether
-- that user went offline (it was the user's last live session).
local function end_session(sid, now)
  local v = redis.call('HGET', K_ROOM, 's:' .. sid)
  if not v then
    return nil, false
  end
  local _, _, uid = parse_sess(v)
  redis.call('HDEL', K_ROOM, 's:' .. sid)
  return uid, drop_session(uid, now)
end

-- fields_where returns the names, without their 2-character prefix, of
-- the room hash's fields that match pattern and whose value satisfies
-- keep(value): one pass over the room hash.
local function fields_where(pattern, keep)
  local out = {}
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', K_ROOM, cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = page[1]
    local kv = page[2]
    for i = 1, #kv, 2 do
      if keep(kv[i + 1]) then
        out[#out + 1] = string.sub(kv[i], 3)
      end
    end
  until cursor == '0'
  return out
end

-- sessions_where returns the ids of the room's sessions whose value
-- satisfies keep(epoch, node, uid, deadline).
local function sessions_where(keep)
  return fields_where('s:*', function(v) return keep(parse_sess(v)) end)
end

-- reap_expired ends up to max sessions whose deadline is at or before now,
-- publishes a leave for each user that went offline, and sets x to the
-- earliest deadline left. It scans the room only when x is due.
local function reap_expired(now, max, channel, cmd)
  local x = tonumber(redis.call('HGET', K_ROOM, 'x'))
  if not x or x > now then
    return 0
  end
  local soonest
  local expired = sessions_where(function(_, _, _, d)
    if d and d <= now then
      return true
    end
    if d and (not soonest or d < soonest) then
      soonest = d
    end
    return false
  end)
  local n = 0
  for _, sid in ipairs(expired) do
    if n >= max then
      soonest = now -- more are due: come back at once
      break
    end
    local uid, left = end_session(sid, now)
    n = n + 1
    if left then
      publish(channel, cmd, 'leave', uid)
    end
  end
  if soonest then
    redis.call('HSET', K_ROOM, 'x', int(soonest))
  else
    redis.call('HDEL', K_ROOM, 'x')
  end
  return n
end

-- prune forgets a few members offline for longer than the retention.
local function prune(now, retention, channel, cmd)
  local cutoff = OFFLINE - (now - retention)
  local old = redis.call('ZRANGEBYSCORE', K_ORDER, '(' .. int(cutoff), '+inf', 'LIMIT', 0, 16)
  for _, uid in ipairs(old) do
    local inv = redis.call('HGET', K_ROOM, 'i:' .. uid)
    if inv and parse_inv(inv) > 0 then
      -- Invisible but alive: kept (placed anew; the others see no change
      -- but the order, which a list's stamp counts in c).
      redis.call('ZADD', K_ORDER, int(OFFLINE - now), uid)
      redis.call('HINCRBY', K_ROOM, 'c', 1)
    else
      redis.call('ZREM', K_ORDER, uid)
      redis.call('HDEL', K_PROFILE, 'd:' .. uid, 'p:' .. uid)
      redis.call('HDEL', K_ROOM, 'i:' .. uid, 'h:' .. uid)
      publish(channel, cmd, 'remove', uid)
    end
  end
end

-- list_head reads what a list of the room depends on besides its page of
-- members (list.lua, list_stamp.lua): {v, e, c, n, t}, and the order score
-- below which members are shown (online_only "1": online members only;
-- else members offline for longer than retention at now are hidden). It
-- returns nil when epoch is not "" and not the room's (the room was
-- removed). Every change a list shows bumps v (joins, leaves, data,
-- profiles, removals) or c (a second tab, or one of two closed); e changes
-- when the room is removed, and t (set by the change that creates the room,
-- and by a keep-alive at most once a minute) tells a room created again
-- after Redis lost it (v starts over) from the old one.
local function list_head(epoch, online_only, now, retention)
  local m = redis.call('HMGET', K_ROOM, 'v', 'e', 'c', 'n', 't')
  local e = m[2] or '0'
  if epoch ~= '' and e ~= epoch then
    return nil
  end
  local max = ONLINE_MAX
  if online_only ~= '1' then
    max = OFFLINE - (now - retention)
  end
  return {tonumber(m[1]) or 0, e, tonumber(m[3]) or 0, tonumber(m[4]) or 0, tonumber(m[5]) or 0}, '(' .. int(max)
end

-- bytes_le tells whether a <= b in byte order (Lua's own comparison follows
-- the locale).
local function bytes_le(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a <= #b
end

-- list_start returns the rank in the order set of the first member after
-- the position (order score, userId) of a cursor (list.lua, list_stamp.lua;
-- 0 when score is ""). Equal scores are ordered by member, so (score,
-- member) is a total order. An online score is join sequence × PER +
-- sessions and each member has a sequence of its own: the next member is
-- the first of a later sequence, whatever the sessions do meanwhile. An
-- offline one follows the member itself when it is still there with that
-- score, else the last of its ties that sorts before (or is) userId.
local function list_start(sc, uid)
  if sc == '' then
    return 0
  end
  sc = tonumber(sc)
  if sc < ONLINE_MAX then
    return redis.call('ZCOUNT', K_ORDER, '-inf', '(' .. int((math.floor(sc / PER) + 1) * PER))
  end
  local cur = redis.call('ZSCORE', K_ORDER, uid)
  if cur and tonumber(cur) == sc then
    return redis.call('ZRANK', K_ORDER, uid) + 1
  end
  -- A binary search of the ties by byte order (as Redis orders them).
  local lo = redis.call('ZCOUNT', K_ORDER, '-inf', '(' .. int(sc))
  local hi = redis.call('ZCOUNT', K_ORDER, '-inf', int(sc))
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if bytes_le(redis.call('ZRANGE', K_ORDER, mid, mid)[1], uid) then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo
end

-- list_page returns the rank of a page's first member and the page's size
-- field of the stamp: the members from that rank on that the list shows,
-- up to limit + 1 (more than limit: more follow, and the page has limit).
-- max is list_head's bound.
local function list_page(sc, uid, limit, max)
  local start = list_start(sc, uid)
  local shown = redis.call('ZCOUNT', K_ORDER, '-inf', max) - start
  return start, math.max(0, math.min(shown, limit + 1))
end

-- touch gives every key of the room the same time to live, so that an
-- abandoned room disappears after the offline retention. (The outbox has
-- its own, shorter one: publish sets it.)
local function touch(ttl)
  for i = 1, 3 do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end


-- pending_users returns the users marked pending in the room (changed) for
-- at least min_age ms at now: their node may have died before it updated
-- their org-wide state, so the reaper does it.
local function pending_users(now, min_age)
  return fields_where('u:*', function(v) return now - (tonumber(v) or 0) >= min_age end)
end

-- with_changed appends the users of CHANGED (and of extra) to reply, each
-- once.
local function with_changed(reply, extra)
  local seen = {}
  for _, list in ipairs({CHANGED, extra or {}}) do
    for _, uid in ipairs(list) do
      if not seen[uid] then
        seen[uid] = true
        reply[#reply + 1] = uid
      end
    end
  end
  return reply
end
