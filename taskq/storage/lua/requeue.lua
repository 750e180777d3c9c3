-- requeue: give a job back to its queue now.
-- failed / cancelled / skipped / expired (its expiry dropped): attempts reset, error history kept, expiry
-- removed; scheduled / stalled / waiting: moved to the queue now; active:
-- taken from its worker (the token is bumped, so that worker's outcome is
-- discarded), its lock freed. requeue count +1.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id  ARGV[3] front (0|1)
-- Returns {1, previous state} | {-1, ''} | {-2, state} (queued/succeeded).
local id = ARGV[2]
local jk = jkey(id)
local j = redis.call('HMGET', jk, 's', 'q', 'p', 'w', 'r', 't', 'u', 'ps', 'fc')
local st = j[1]
if not st then return {-1, ''} end
if st == 'queued' or st == 'succeeded' then return {-2, st} end
if st == 'active' then
  redis.call('SREM', P .. 'wj:' .. j[4], id)
  redis.call('HINCRBY', jk, 'k', 1)
  redis.call('HINCRBY', jk, 'a', -1)
  release_lock(id, j[5])
  release_flow(id, j[6], j[2], j[9], j[5])
else
  unindex(id, jk, st)
end
-- a job stalled from failed starts over as one requeued from failed (stall
-- already took it out of its expiry and gave it back its unique key)
if st == 'expired' and j[9] then
  -- an operator's requeue of an expired job means run it: its expiry goes, its limits stay
  redis.call('HSET', jk, 'fc', (string.gsub(j[9], '^%d*|', '|')))
end
if st == 'failed' or st == 'cancelled' or st == 'skipped' or st == 'expired' or
    (st == 'stalled' and j[8] == 'failed') then
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
