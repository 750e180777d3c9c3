-- cancel: a job that has not started ends as cancelled and never runs; an
-- active job is asked to stop (cooperative: cr=1, forced: cr=2); the worker
-- learns of it on its next heartbeat. A requeue asked for while it ran
-- (rr, requeue.lua) is withdrawn: the later request stands.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id  ARGV[3] force (0|1)
-- ARGV[4] finished ttl_ms  ARGV[5] done cap
-- A workflow handle (wk) is not cancelled itself: every job of its
-- workflow not yet finished is (as above), and the handle ends with them.
-- Returns {1, 'cancelled'} | {1, 'requested'} | {-1, ''} not found |
--   {-2, state} finished already.
CAPS.done = tonumber(ARGV[5])
local id = ARGV[2]
local jk = jkey(id)
local st = redis.call('HGET', jk, 's')
if not st then return {-1, ''} end

local function cancel_one(mid, mk, mst)
  if mst == 'active' then
    local level = '1'
    if ARGV[3] == '1' then level = '2' end
    redis.call('HSET', mk, 'cr', level)
    redis.call('HDEL', mk, 'rr')  -- withdraws a requeue asked for while it ran
    redis.call('HINCRBY', mk, 'cc', 1)
    return 'requested'
  end
  unindex(mid, mk, mst)
  redis.call('HDEL', mk, 'due', 'fr', 'ps')
  redis.call('HINCRBY', mk, 'cc', 1)
  local j = redis.call('HMGET', mk, 't', 'q', 'u', 'wk')
  finalize(mid, mk, 'cancelled', j[3], tonumber(ARGV[4]), 0, '')
  if not j[4] then count(j[1], j[2], 'cancelled') end
  return 'cancelled'
end

if LIVE[st] and redis.call('HEXISTS', jk, 'wk') == 1 then
  local how = 'cancelled'
  for _, mid in ipairs(redis.call('LRANGE', P .. 'wm:' .. id, 0, -1)) do
    local mk = jkey(mid)
    local mst = redis.call('HGET', mk, 's')
    if mst and LIVE[mst] and cancel_one(mid, mk, mst) == 'requested' then how = 'requested' end
  end
  flush()
  return {1, how}
end
if st == 'active' then
  local level = '1'
  if ARGV[3] == '1' then level = '2' end
  redis.call('HSET', jk, 'cr', level)
  redis.call('HDEL', jk, 'rr')  -- withdraws a requeue asked for while it ran
  redis.call('HINCRBY', jk, 'cc', 1)
  return {1, 'requested'}
end
if not LIVE[st] then return {-2, st} end
unindex(id, jk, st)
redis.call('HDEL', jk, 'due', 'fr', 'ps')
redis.call('HINCRBY', jk, 'cc', 1)
local j = redis.call('HMGET', jk, 't', 'q', 'u')
finalize(id, jk, 'cancelled', j[3], tonumber(ARGV[4]), 0, '')
count(j[1], j[2], 'cancelled')
flush()
return {1, 'cancelled'}
