-- forget_node.lua: forget a dead node once its sessions are ended: only if
-- it is still declared dead (score 0).
-- KEYS: 1 the nodes zset
-- ARGV: 1 node generation label
-- Returns 1 when forgotten, else 0.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur and score(cur) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
