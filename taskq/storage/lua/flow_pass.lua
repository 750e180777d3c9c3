-- flow_pass: the scheduler's look at one queue's flow control. Limiters
-- whose time came (P fp:<queue>) move the jobs they now allow back to the
-- front of the queue; jobs past their expiry that have not started
-- (scheduled, queued, waiting) end as expired.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] queue  ARGV[3] ttl_ms of expired jobs
-- ARGV[4] done cap  ARGV[5] batch limit (limiters, and expired jobs, per call)
-- Returns {moved, expired, next_ms}: next_ms is the next time a limiter or
--   an expiry of the queue is due (-1 = none).
-- Invariants: a held job leaves its limiter's list and enters its ready list
-- in one step, keeping its order and its attempts; an expired job leaves
-- its index and is finished (unique key freed) in one step; nothing is
-- woken before its limit allows it: no worker claims in vain.
local queue = ARGV[2]
local ttl = tonumber(ARGV[3])
CAPS.done = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local zk = P .. 'fp:' .. queue
local moved = 0
for _, lim in ipairs(redis.call('ZRANGEBYSCORE', zk, '-inf', NOWS, 'LIMIT', 0, limit)) do
  moved = moved + flow_look(queue, lim)
end
local xk = P .. 'xp:' .. queue
local expired = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', xk, '-inf', NOWS, 'LIMIT', 0, limit)) do
  redis.call('ZREM', xk, id)
  local jk = jkey(id)
  local j = redis.call('HMGET', jk, 's', 't')
  local st = j[1]
  if st == 'scheduled' or st == 'queued' or st == 'waiting' then
    unindex(id, jk, st)
    redis.call('HDEL', jk, 'due', 'fr')
    expire(id, jk, j[2], queue, ttl)
    expired = expired + 1
  end
end
local nxt = -1
for _, k in ipairs({zk, xk}) do
  local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if first[2] and (nxt < 0 or tonumber(first[2]) < nxt) then nxt = tonumber(first[2]) end
end
flush()
return {moved, expired, nxt}
