-- webhook_claim.lua: a sender claims the rooms whose webhook events are due:
-- their index score moves to the end of the claim, so no other sender takes
-- them meanwhile. A claim that outlives its sender (killed) just ends: the
-- rooms are due again and another sender takes them.
-- KEYS: 1 the webhook index (zset: room tag -> when it is due, unix ms)
-- ARGV: 1 now (ms), 2 claim length (ms), 3 most rooms
-- Returns the claimed room tags, earliest due first. Run twice, it claims
-- the same rooms again (their claim only gets longer) or none.
local now = tonumber(ARGV[1])
local tags = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = int(now + tonumber(ARGV[2]))
for _, tag in ipairs(tags) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, tag)
end
return tags
