-- progress: record a running job's progress, only while the caller still
-- holds its lease (state active and the same fencing token).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id  ARGV[3] token  ARGV[4] progress blob
-- Returns 1 if written, 0 if the lease was lost.
local jk = jkey(ARGV[2])
local j = redis.call('HMGET', jk, 's', 'k')
if j[1] ~= 'active' or j[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jk, 'pr', ARGV[4])
return 1
