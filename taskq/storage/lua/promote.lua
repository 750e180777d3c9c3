-- promote: move due jobs from P sched to their ready lists.
-- Any number of schedulers may call it at once: a job is ZREMed and pushed
-- in the same script, so it is moved exactly once and never lost between
-- the schedule and its queue. A job enqueued with front=True and a delay
-- (field fr) goes to the head of its queue, as it would have at once.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] batch limit (e.g. 2000)
-- Returns {moved, next_due_ms (-1 = none), now_ms}.
local sk = P .. 'sched'
local ids = redis.call('ZRANGEBYSCORE', sk, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', sk, id)
  local jk = jkey(id)
  local j = redis.call('HMGET', jk, 's', 'q', 'p', 'fr')
  if j[1] == 'scheduled' then
    redis.call('HSET', jk, 's', 'queued')
    redis.call('HDEL', jk, 'due', 'fr')
    push_ready(id, j[2], j[3], j[4] == '1')  -- enqueued with front=True: to the head
    moved = moved + 1
  end
end
local nxt = redis.call('ZRANGE', sk, 0, 0, 'WITHSCORES')
local due = -1
if nxt[2] then due = tonumber(nxt[2]) end
return {moved, due, NOW}
