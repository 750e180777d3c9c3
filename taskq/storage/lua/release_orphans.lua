-- release_orphans: after a lost reply (connection dropped while a claim ran)
-- a worker may hold jobs it never heard of. It lists the jobs it knows;
-- every other job leased to it goes back to the front of its queue, its
-- attempt refunded and its token bumped.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] worker id  ARGV[3..] ids the worker holds
-- Returns the ids released.
local wid = ARGV[2]
local known = {}
for i = 3, #ARGV do known[ARGV[i]] = true end
local wj = P .. 'wj:' .. wid
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', wj)) do
  if not known[id] then
    local jk = jkey(id)
    redis.call('SREM', wj, id)
    local j = redis.call('HMGET', jk, 's', 'w', 'q', 'p', 'r', 't', 'fc', 'rr')
    if j[1] == 'active' and j[2] == wid then
      redis.call('HINCRBY', jk, 'k', 1)
      redis.call('HINCRBY', jk, 'a', -1)
      release_lock(id, j[5])
      release_flow(id, j[6], j[3], j[7], j[5])
      -- a requeue asked for while it was leased (requeue.lua) is done by this
      if j[8] then redis.call('HDEL', jk, 'rr', 'cr') end
      redis.call('HSET', jk, 's', 'queued')
      push_ready(id, j[3], j[4], true)
      uncount_start(j[6], j[3])
      out[#out + 1] = id
    end
  end
end
flush()
return out
