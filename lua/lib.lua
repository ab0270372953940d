-- lib.lua: helpers shared by every room script. It is prepended to each
-- script when the script is loaded, so a script stays one atomic unit.
--
-- Every room script takes the same five KEYS, all under the room's hash tag
-- {<org>::<roomId>} so that a script touches one Redis Cluster slot:
--   KEYS[1] room     hash: v (version), q (join sequence), e (room epoch),
--                    o (online users), t (when the keys' TTL was last set),
--                    u:<userId> (the user's live session ids, joined by "\n")
--   KEYS[2] sessions zset: sessionId -> deadline (unix ms), or HELD for a
--                    session that lives by its node's lease
--   KEYS[3] sess     hash: sessionId -> "<epoch>\t<node>\t<userId>"
--   KEYS[4] order    zset: userId -> online: join sequence (< ONLINE_MAX);
--                    offline: OFFLINE - lastDisconnected
--   KEYS[5] profile  hash: p:<userId> -> "<name>\t<image>", d:<userId> -> data JSON
-- Time is always passed in ARGV, never read here.

local K_ROOM, K_SESSIONS, K_SESS, K_ORDER, K_PROFILE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local OFFLINE = 9000000000000000
local ONLINE_MAX = 1000000000000000
-- HELD is the score of a session held by a node's open WebSocket: it has no
-- deadline of its own but lives by its node's lease (the node is named in
-- the sess hash). Far above any deadline in ms, so ZRANGEBYSCORE -inf now
-- never finds it.
local HELD = 4000000000000000

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

local function split(s)
  local t = {}
  for part in string.gmatch(s, '[^\n]+') do
    t[#t + 1] = part
  end
  return t
end

local function count_sessions(list)
  if not list then
    return 0
  end
  local _, n = string.gsub(list, '\n', '\n')
  return n + 1
end

-- parse_sess splits a sess value into epoch, node, userId.
local function parse_sess(v)
  local a = string.find(v, '\t', 1, true)
  local b = string.find(v, '\t', a + 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end

-- member_json renders a member as the JSON the API shows.
local function member_json(uid)
  local sessions = count_sessions(redis.call('HGET', K_ROOM, 'u:' .. uid))
  local last = 0
  local score = tonumber(redis.call('ZSCORE', K_ORDER, uid))
  if score and score >= ONLINE_MAX then
    last = OFFLINE - score
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
  redis.call(cmd, channel, '{"version":' .. int(v) .. ',"event":"' .. event .. '","userId":' .. cjson.encode(uid)
    .. ',"member":' .. member_json(uid) .. extra .. '}')
  return v
end

-- end_session removes one session. It returns the session's user and whether
-- that user went offline (it was the user's last live session).
local function end_session(sid, now)
  local v = redis.call('HGET', K_SESS, sid)
  redis.call('ZREM', K_SESSIONS, sid)
  if not v then
    return nil, false
  end
  local _, _, uid = parse_sess(v)
  redis.call('HDEL', K_SESS, sid)
  local field = 'u:' .. uid
  local list = redis.call('HGET', K_ROOM, field)
  if not list then
    return uid, false
  end
  local rest = {}
  for _, s in ipairs(split(list)) do
    if s ~= sid then
      rest[#rest + 1] = s
    end
  end
  if #rest > 0 then
    redis.call('HSET', K_ROOM, field, table.concat(rest, '\n'))
    return uid, false
  end
  redis.call('HDEL', K_ROOM, field)
  redis.call('HINCRBY', K_ROOM, 'o', -1)
  redis.call('ZADD', K_ORDER, int(OFFLINE - now), uid)
  return uid, true
end

-- reap_expired ends up to max sessions whose deadline is at or before now and
-- publishes a leave for each user that went offline.
local function reap_expired(now, max, channel, cmd)
  local expired = redis.call('ZRANGEBYSCORE', K_SESSIONS, '-inf', int(now), 'LIMIT', 0, max)
  for _, sid in ipairs(expired) do
    local uid, left = end_session(sid, now)
    if left then
      publish(channel, cmd, 'leave', uid)
    end
  end
  return #expired
end

-- prune forgets a few members offline for longer than the retention.
local function prune(now, retention, channel, cmd)
  local cutoff = OFFLINE - (now - retention)
  local old = redis.call('ZRANGEBYSCORE', K_ORDER, '(' .. int(cutoff), '+inf', 'LIMIT', 0, 16)
  for _, uid in ipairs(old) do
    redis.call('ZREM', K_ORDER, uid)
    redis.call('HDEL', K_PROFILE, 'd:' .. uid, 'p:' .. uid)
    publish(channel, cmd, 'remove', uid)
  end
end

-- touch gives every key of the room the same time to live, so that an
-- abandoned room disappears after the offline retention.
local function touch(ttl)
  for i = 1, 5 do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end

