-- purge_queue: delete up to ARGV[3] queued jobs of one queue, those its
-- flow limits hold back (parked) included (call again until it returns 0).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] queue  ARGV[3] batch limit
-- Returns the number of jobs deleted.
-- Invariant: a resource's waiters are never left without a turn. A deleted
-- job may be the waiter a release handed a free resource to; when the call
-- ends, each such resource still free passes its turn to its next waiter
-- (pushed to the front of its own queue: if that is this queue, the next
-- call deletes it in turn).
local q = ARGV[2]
local pk = P .. 'qp:' .. q
local left = tonumber(ARGV[3])
local n = 0
local freed = {}  -- resources of deleted jobs

-- Deletes the jobs popped from list `lk` (indexed under `member` in zset
-- `zk`) that are still in `state`, held by `limiter` if given; drops the
-- member once the list is empty.
local function purge_list(zk, member, lk, state, limiter)
  while left > 0 do
    local id = redis.call('RPOP', lk)
    if not id then break end
    local jk = jkey(id)
    local j = redis.call('HMGET', jk, 's', 'u', 'r', 'pk')
    if j[1] == state and (not limiter or j[4] == limiter) then
      release_unique(id, j[2])
      redis.call('ZREM', P .. 'xp:' .. q, id)
      if j[3] and not limiter then freed[j[3]] = true end
      redis.call('DEL', jk)
      n = n + 1
    end
    left = left - 1
  end
  if redis.call('LLEN', lk) == 0 then redis.call('ZREM', zk, member) end
end

for _, pr in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
  purge_list(pk, pr, P .. 'q:' .. q .. ':' .. pr, 'queued', nil)
end
-- the jobs its limiters hold back: each limiter's list, then the limiter
local zk = P .. 'fp:' .. q
for _, lim in ipairs(redis.call('ZRANGE', zk, 0, -1)) do
  if left <= 0 then break end
  purge_list(zk, lim, P .. 'fh:' .. q .. ':' .. lim, 'waiting', lim)
end
for res in pairs(freed) do
  if not redis.call('GET', P .. 'l:' .. res) then hand_off(res) end
end
return n
