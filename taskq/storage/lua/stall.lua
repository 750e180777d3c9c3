-- stall: hold a queued, scheduled or failed job in P stalled, where it is
-- not dispatched, until unstall. A workflow's handle is refused (it is not
-- run: its steps are).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id
-- Returns {1, previous state} | {-1, ''} | {-2, state}.
local id = ARGV[2]
local jk = jkey(id)
local st = redis.call('HGET', jk, 's')
if not st then return {-1, ''} end
if st ~= 'queued' and st ~= 'scheduled' and st ~= 'failed' then return {-2, st} end
if redis.call('HEXISTS', jk, 'wk') == 1 then return {-2, 'a workflow handle (stall its steps)'} end
unindex(id, jk, st)
if st == 'failed' then
  -- live again: it takes back its unique key if nobody holds it
  redis.call('PERSIST', jk)
  local uk = redis.call('HGET', jk, 'u')
  if uk and not redis.call('GET', P .. 'u:' .. uk) then redis.call('SET', P .. 'u:' .. uk, id) end
end
redis.call('HSET', jk, 's', 'stalled', 'ps', st)
redis.call('ZADD', P .. 'stalled', NOW, id)
return {1, st}
