-- renew_lease.lua: register or renew a node's lease, compare-and-set, so a
-- late or repeated renewal never revives a lease that lapsed (and that a
-- reaper may be acting on).
-- KEYS: 1 the nodes zset (member: node generation label, score: lease
--       deadline in unix ms; 0 once declared dead)
-- ARGV: 1 node generation label, 2 the deadline the node last set ("" to
--       register a new generation), 3 the new deadline (ms)
-- Returns 1 when renewed, 0 when the lease is not the node's any more
-- (lapsed and declared dead, forgotten, or lost with Redis' data).
-- The same call twice (a retry of a call that ran, its answer lost) answers
-- 1 both times: the lease already holds the new deadline, so it is safe to
-- retry; a dead lease (score 0) never holds it.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur and score(cur) == tonumber(ARGV[3]) then
  return 1
end
if ARGV[2] == '' then
  if cur then
    return 0
  end
elseif not cur or score(cur) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
