-- end_session.lua: end one session now, if its epoch matches (an old session
-- token never ends a newer session with the same id).
-- KEYS: the five room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 sessionId, 6 session epoch
-- Returns 1 when a session ended, else 0.
local now = tonumber(ARGV[1])
local sess = redis.call('HGET', K_SESS, ARGV[5])
if not sess then
  return 0
end
local epoch = parse_sess(sess)
if epoch ~= ARGV[6] then
  return 0
end
local uid, left = end_session(ARGV[5], now)
if left then
  publish(ARGV[2], ARGV[3], 'leave', uid)
end
touch(ARGV[4])
return 1
