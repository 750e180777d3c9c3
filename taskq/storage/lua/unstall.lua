-- unstall: move a stalled job back into its queue (a job stalled from
-- failed starts over with its attempts reset); one stalled while scheduled
-- whose due time is still ahead goes back to the schedule for it. A job
-- stalled from failed whose expiry has passed loses it, as on requeue: an
-- operator's unstall of it means run it (requeue.lua, drop_passed_expiry).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id
-- Returns {1, 'queued' | 'scheduled'} | {-1, ''} | {-2, state}.
local id = ARGV[2]
local jk = jkey(id)
local j = redis.call('HMGET', jk, 's', 'q', 'p', 'ps', 'due', 'fc')
if not j[1] then return {-1, ''} end
if j[1] ~= 'stalled' then return {-2, j[1]} end
redis.call('ZREM', P .. 'stalled', id)
if j[4] == 'failed' then
  -- it starts over, as a requeue from failed: attempts reset, its old
  -- outcome (and a cancel request of its last run) dropped
  redis.call('HSET', jk, 'a', 0)
  redis.call('HDEL', jk, 'f', 'cr', 'res')
  redis.call('DEL', P .. 'r:' .. id)
  drop_passed_expiry(id, jk, j[2], j[6], false)
end
local due = tonumber(j[5])
if j[4] == 'scheduled' and due and due > NOW then
  redis.call('HDEL', jk, 'ps')
  redis.call('HSET', jk, 's', 'scheduled')
  schedule(id, due)
  return {1, 'scheduled'}
end
redis.call('HDEL', jk, 'ps', 'due', 'fr')
redis.call('HSET', jk, 's', 'queued')
push_ready(id, j[2], j[3], false)
return {1, 'queued'}
