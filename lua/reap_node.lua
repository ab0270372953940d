-- reap_node.lua: end the room's sessions that a dead node held for its
-- sockets (the node's lease lapsed), publishing a leave for each user that
-- went offline. Atomic, and it ends only sessions still HELD by that node
-- (generation), so reapers may run it concurrently, and a node that came
-- back under a new generation keeps the sessions it took over.
-- KEYS: the three room keys (see lib.lua)
-- ARGV: 1 now (ms), 2 events channel, 3 publish command, 4 key ttl (ms),
--       5 the dead node's generation label
-- Its leaves name the dead generation ("node"): a node that was only frozen
-- learns from them at once that it must take its sessions over again.
-- Returns {sessions ended, users...}: the users that went offline (lib.lua
-- changed) and those left pending in the room for a second or more.
local now = tonumber(ARGV[1])
local n = 0
local held = sessions_where(function(_, node, _, d) return d == nil and node == ARGV[5] end)
for _, sid in ipairs(held) do
  local uid, left = end_session(sid, now)
  n = n + 1
  if left then
    publish(ARGV[2], ARGV[3], 'leave', uid, ARGV[5])
  end
end
if n > 0 then
  touch(ARGV[4])
end
return with_changed({n}, pending_users(now, 1000))
