-- end_session.lua: end one session now, if its epoch matches (an old session
-- token never ends a newer session with the same id).
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 sessionId, 6 session epoch, 7 not after (unix ms, "0": no bound;
--       lib.lua late): a disconnect that Redis runs later would end the
--       session after its client went on with it (the same token
--       heartbeating again)
-- A session HELD by a node's socket that ends without a leave (the user has
-- other sessions) gets an "ended" notice on the events channel.
-- Returns {1, users...} when a session ended (then users is the one that
-- went offline, if it did; lib.lua changed), else {0}, or an error
-- "LATE ..." (nothing changed).
if late(ARGV[7]) then
  return redis.error_reply('LATE the disconnect arrived after its bound')
end
local now = tonumber(ARGV[1])
local sess = redis.call('HGET', K_ROOM, 's:' .. ARGV[5])
if not sess then
  return {0}
end
local epoch, _, _, d = parse_sess(sess)
if epoch ~= ARGV[6] then
  return {0}
end
local held = d == nil
local uid, left = end_session(ARGV[5], now)
if left then
  publish(ARGV[2], ARGV[3], 'leave', uid)
elseif held then
  -- Nothing visible changed (the user has other sessions), but the node
  -- that holds this session for a socket must learn that it ended: a notice
  -- without a version, which nodes do not pass on to clients.
  redis.call(ARGV[3], ARGV[2], '{"event":"ended","userId":' .. cjson.encode(uid) .. ',"sessionId":'
    .. cjson.encode(ARGV[5]) .. ',"epoch":' .. cjson.encode(epoch) .. '}')
end
touch(ARGV[4])
return with_changed({1})
