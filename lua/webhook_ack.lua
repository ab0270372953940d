-- webhook_ack.lua: remove sent (or dropped) events from a room's webhook
-- outbox. An empty outbox is deleted.
-- KEYS: 1 the room's outbox (stream)
-- ARGV: the entry ids
-- Returns how many events are left. Safe to run twice.
if #ARGV > 0 then
  redis.call('XDEL', KEYS[1], unpack(ARGV))
end
local n = redis.call('XLEN', KEYS[1])
if n == 0 then
  redis.call('DEL', KEYS[1])
end
return n
