-- heartbeat: extend a worker's lease on every job it holds.
-- A lease belongs to the worker, not to each job: one ZADD renews a whole
-- claimed batch. Leases are judged on the server's clock.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] worker id  ARGV[3] info ttl_ms
-- ARGV[4] max_gap_ms of the reapers' watch, or "": a beat is a pass of the
--   watch too (watch_tick), so it goes on while any worker beats
-- ARGV[5..] optional info fields (name value ...) written to P w:<worker>
-- Returns {now_ms, id1, cancel1, id2, cancel2, ...} for held jobs whose
-- cancellation was requested (cancel = 1 cooperative, 2 forced).
local wid = ARGV[2]
redis.call('ZADD', P .. 'workers', NOW, wid)
if ARGV[4] and ARGV[4] ~= '' then watch_tick(tonumber(ARGV[4])) end
local wk = P .. 'w:' .. wid
if #ARGV > 4 then
  local f = {}
  for i = 5, #ARGV do f[#f + 1] = ARGV[i] end
  redis.call('HSET', wk, unpack(f))
end
redis.call('HSET', wk, 'hb', NOW)
redis.call('PEXPIRE', wk, tonumber(ARGV[3]))
local out = {NOW}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'wj:' .. wid)) do
  local cr = redis.call('HGET', jkey(id), 'cr')
  if cr then out[#out + 1] = id; out[#out + 1] = cr end
end
return out
