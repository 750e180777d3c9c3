-- cancel: a job that has not started ends as cancelled and never runs; an
-- active job is asked to stop (cooperative: cr=1, forced: cr=2); the worker
-- learns of it on its next heartbeat. A requeue asked for while it ran
-- (rr, requeue.lua) is withdrawn: the later request stands. (cancel_job in
-- _lib.lua.)
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id  ARGV[3] force (0|1)
-- ARGV[4] finished ttl_ms  ARGV[5] done cap
-- A workflow handle (wk) is not cancelled itself: every job of its
-- workflow not yet finished is (as above), and the handle ends with them.
-- Its jobs in other queues' slots (`wq`) are cancelled there through the
-- outbox (kind c), right after this call.
-- Returns {1, 'cancelled'} | {1, 'requested'} | {-1, ''} not found |
--   {-2, state} finished already.
CAPS.done = tonumber(ARGV[5])
local id = ARGV[2]
local jk = jkey(id)
local force, ttl = ARGV[3] == '1', tonumber(ARGV[4])
local st = redis.call('HGET', jk, 's')
if not st then return {-1, ''} end

if LIVE[st] and redis.call('HEXISTS', jk, 'wk') == 1 then
  for q in string.gmatch(redis.call('HGET', jk, 'wq') or '', '%S+') do
    OUTBOX[#OUTBOX + 1] = cmsgpack.pack({q, 'c', id, ARGV[3], ARGV[4]})
  end
  local how = cancel_members(id, force, ttl)
  flush()
  return {1, how}
end
if not LIVE[st] then return {-2, st} end
local how = cancel_job(id, jk, st, force, ttl)
flush()
return {1, how}
