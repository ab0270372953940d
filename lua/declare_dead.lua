-- declare_dead.lua: declare a node dead if its lease is still the lapsed
-- one the reaper saw (not renewed meanwhile): its score becomes 0, which no
-- renewal accepts, and reapers then end its sessions room by room.
-- KEYS: 1 the nodes zset
-- ARGV: 1 node generation label, 2 the lease deadline the reaper saw
-- Returns 1 when the node is (now) dead, else 0.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur then
  return 0
end
if score(cur) == 0 then
  return 1
end
if score(cur) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
