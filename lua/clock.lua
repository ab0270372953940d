-- clock.lua: write the primary's time into the clock key. The key
-- replicates: a node that reads from a replica in its region reads it there
-- to know how far behind the primary its replica is (pkg/redisstore
-- replica.go). Like lib.lua late(), it reads the server's clock: the point
-- is the primary's time, not a node's.
-- KEYS: 1 the clock key
-- ARGV: 1 the key's ttl (ms)
-- Returns the time written (unix ms).
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], int(ms), 'PX', ARGV[1])
return ms
