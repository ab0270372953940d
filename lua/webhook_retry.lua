-- webhook_retry.lua: a room's webhook request failed: count the attempt and
-- make the room due again after the backoff, base × 2^(attempts - 1) at
-- most max, times the jitter. Only if the room is still in the index.
-- KEYS: 1 the webhook index, 2 the attempts hash (room tag -> failures in a row)
-- ARGV: 1 now (ms), 2 room tag, 3 base (ms), 4 max (ms), 5 jitter (0.5-1)
-- Returns the delay (ms). Run twice, the backoff gets one step longer.
local n = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local d = math.min(tonumber(ARGV[3]) * 2 ^ math.min(n - 1, 30), tonumber(ARGV[4]))
d = math.floor(d * tonumber(ARGV[5]))
redis.call('ZADD', KEYS[1], 'XX', int(tonumber(ARGV[1]) + d), ARGV[2])
return d
