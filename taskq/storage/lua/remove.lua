-- remove: delete a job and all its data (retract = only before it runs:
-- queued, scheduled, waiting, stalled; delete = any state but active).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id  ARGV[3] mode: retract | delete
-- Returns {1, previous state} | {-1, ''} | {-2, state}.
local id = ARGV[2]
local jk = jkey(id)
local j = redis.call('HMGET', jk, 's', 'u', 't', 'q')
local st = j[1]
if not st then return {-1, ''} end
if st == 'active' then return {-2, st} end
if ARGV[3] == 'retract' and not LIVE[st] then return {-2, st} end
unindex(id, jk, st)
release_unique(id, j[2])
redis.call('DEL', jk, P .. 'r:' .. id)
if ARGV[3] == 'retract' then
  count(j[3], j[4], 'retracted')
  flush()
end
return {1, st}
