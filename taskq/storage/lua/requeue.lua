-- requeue: give a job back to its queue.
-- failed / cancelled / skipped / expired: attempts reset, error history
-- kept, hash expiry removed, and an expiry (`expires`) that has passed
-- dropped (an operator's requeue means run it: its limits stay, and an
-- expiry still ahead stays); a job stalled from failed likewise;
-- scheduled / stalled / waiting: moved to the queue now; active: see below.
-- requeue count +1.
-- An active job stays active, holding its lease: its resource lock, its
-- concurrency and resource slots and its fencing token stay with the
-- running attempt, which is asked to stop (cr, a cooperative cancel, seen
-- at its worker's next heartbeat). `rr` marks the request (1, or 2: to the
-- front); the attempt's end -- its outcome in settle_claim, whatever it is
-- (the outcome itself is discarded), its worker's reap, or release_orphans
-- -- frees the lock and slots and queues the job in the same step.
-- Invariant: a resource lock or slot is held only by an active job and
-- freed with its lease, so no second run (of this job or another under
-- the same resource or limit) starts while the attempt still runs.
-- A cancel asked for after the requeue withdraws it (cancel.lua).
-- Refused ({-2, why}): a workflow's handle (it is not run: its steps are),
-- and a step still waiting for its dependencies (it would run without
-- their values); a job waiting for a resource lock is requeued.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id  ARGV[3] front (0|1)
-- Returns {1, previous state} | {-1, ''} | {-2, state} (queued/succeeded).
local id = ARGV[2]
local jk = jkey(id)
local j = redis.call('HMGET', jk, 's', 'q', 'p', 'w', 'r', 't', 'u', 'ps', 'fc')
local st = j[1]
if not st then return {-1, ''} end
if st == 'queued' or st == 'succeeded' then return {-2, st} end
if redis.call('HEXISTS', jk, 'wk') == 1 then return {-2, 'a workflow handle (requeue or cancel its steps)'} end
if st == 'waiting' and redis.call('EXISTS', P .. 'dp:' .. id) == 1 then
  return {-2, 'waiting for its dependencies'}
end
if st == 'active' then
  local rr = redis.call('HGET', jk, 'rr')
  if ARGV[3] == '1' then redis.call('HSET', jk, 'rr', '2')
  elseif not rr then redis.call('HSET', jk, 'rr', '1') end
  if rr then return {1, st} end  -- asked for already: counted once
  -- the running attempt is asked to stop; a forced cancel under way stays forced
  if not redis.call('HGET', jk, 'cr') then redis.call('HSET', jk, 'cr', '1') end
  redis.call('HINCRBY', jk, 'rq', 1)
  count(j[6], j[2], 'requeued')
  flush()
  return {1, st}
end
unindex(id, jk, st)
-- a job stalled from failed starts over as one requeued from failed (stall
-- already took it out of its expiry and gave it back its unique key)
local finished = st == 'failed' or st == 'cancelled' or st == 'skipped' or st == 'expired' or
    (st == 'stalled' and j[8] == 'failed')
if finished then
  -- an operator's requeue of a finished job means run it: an expiry that
  -- has passed goes (an expired job's always has), its limits stay
  drop_passed_expiry(id, jk, j[2], j[9], st == 'expired')
  redis.call('PERSIST', jk)
  redis.call('HSET', jk, 'a', 0)
  redis.call('HDEL', jk, 'f', 'cr', 'res')
  redis.call('DEL', P .. 'r:' .. id)
  local uk = j[7]
  if uk and not redis.call('GET', P .. 'u:' .. uk) then redis.call('SET', P .. 'u:' .. uk, id) end
end
redis.call('HINCRBY', jk, 'rq', 1)
redis.call('HDEL', jk, 'due', 'fr', 'ps', 'cr')  -- an explicit requeue withdraws a cancel request
redis.call('HSET', jk, 's', 'queued')
push_ready(id, j[2], j[3], ARGV[3] == '1')
count(j[6], j[2], 'requeued')
flush()
return {1, st}
