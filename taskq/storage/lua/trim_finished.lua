-- trim_finished: drop index entries of finished jobs whose hash expired, and
-- stale ones whose id names a job of another state by now (a reused id).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] failed ttl_ms  ARGV[3] done ttl_ms
-- ARGV[4] batch limit
-- Also gives the minute buckets around now an expiry if they lack one: a
-- plain enqueue sets it only with its first job of a minute, so a bucket
-- re-created after its namespace was wiped would otherwise be kept forever.
-- (Run every minute by each scheduler; a bucket is in the window 4 minutes.)
-- Returns the number of entries removed.
local n = 0
local function trim(idx, ttl)
  if ttl <= 0 then return end
  local old = redis.call('ZRANGEBYSCORE', P .. idx, '-inf', NOW - ttl, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, id in ipairs(old) do
    local st = redis.call('HGET', jkey(id), 's')
    -- kept while its job is there in a state of this index; a stale entry
    -- (an id used again, see FINISHED_IN in _lib.lua) is dropped
    if FINISHED_IN[st] ~= idx then
      redis.call('ZREM', P .. idx, id)
      n = n + 1
    end
  end
end
local minute = math.floor(NOW / 60000)
for m = minute - 2, minute + 1 do
  local mk = P .. 'st:m:' .. fmt(m)
  local r = redis.pcall('PEXPIRE', mk, MINUTE_TTL_MS, 'NX')  -- only where none is set
  if type(r) == 'table' and r.err then  -- a server before 7.0 (no NX)
    if redis.call('PTTL', mk) == -1 then redis.call('PEXPIRE', mk, MINUTE_TTL_MS) end
  end
end
trim('failed', tonumber(ARGV[2]))
trim('done', tonumber(ARGV[3]))
return n
