-- trim_finished: drop index entries of finished jobs whose hash expired.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] failed ttl_ms  ARGV[3] done ttl_ms
-- ARGV[4] batch limit
-- Returns the number of entries removed.
local n = 0
local function trim(idx, ttl)
  if ttl <= 0 then return end
  local old = redis.call('ZRANGEBYSCORE', P .. idx, '-inf', NOW - ttl, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, id in ipairs(old) do
    local st = redis.call('HGET', jkey(id), 's')
    if not st or (idx == 'failed' and st ~= 'failed') or (idx == 'done' and LIVE[st]) then
      redis.call('ZREM', P .. idx, id)
      n = n + 1
    end
  end
end
trim('failed', tonumber(ARGV[2]))
trim('done', tonumber(ARGV[3]))
return n
