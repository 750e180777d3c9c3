-- reaper_pass: one look of a reaper at the workers' heartbeats; names the
-- workers whose silence the namespace's reapers have watched for a whole
-- heartbeat timeout. The watch lives on the server, in P reaper, shared by
-- every reaper of the namespace: a reaper process that starts continues the
-- watch of the ones before it, so recovery does not depend on any one
-- process living a whole timeout.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] heartbeat timeout_ms
-- ARGV[3] max_gap_ms: longer than this since any reaper's last pass (a
--   server pause, every reaper gone or cut off) restarts the watch
-- ARGV[4] most workers to name
-- P reaper (hash): last = time of the last pass by any reaper;
--   since = when the current unbroken watch began. Both on the server's
--   clock; the hash expires when no reaper passes for long.
-- Returns {restart, since, now, wid1, hb1, ...}: restart is '' or why
--   the watch restarted in this pass (new | gap | clock); the workers named
--   beat last at least timeout_ms ago, or later than now (a beat from before
--   the server's clock went back), and no reaper has missed a pass since.
-- Invariant: a worker is named only if no heartbeat of it was written during
--   an unbroken watch of at least timeout_ms: a silence judged is one that
--   reapers watched. A clock that goes back or jumps forward, or a gap in the
--   passes, restarts the watch; it never shortens it. The caller reaps with
--   the heartbeat it was given (reap_worker: nothing if the worker beat since).
local timeout, max_gap, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rk = P .. 'reaper'
local r = redis.call('HMGET', rk, 'last', 'since')
local last, since = tonumber(r[1]), tonumber(r[2])
local restart = ''
if not last or not since then restart = 'new'
elseif NOW < last then restart = 'clock'
elseif NOW - last > max_gap then restart = 'gap' end
if restart ~= '' then since = NOW end
redis.call('HSET', rk, 'last', NOWS, 'since', fmt(since))
-- kept while reapers pass; once gone a while, the next pass starts a new watch
redis.call('PEXPIRE', rk, math.max(max_gap * 4, 60000))
local out = {restart, since, NOW}
if NOW - since >= timeout then
  local wk = P .. 'workers'
  local rows = redis.call('ZRANGEBYSCORE', wk, '-inf', fmt(NOW - timeout), 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #rows do out[#out + 1] = rows[i] end
  -- a heartbeat later than now: written before the clock went back, and
  -- none since (a beat since would be earlier than now)
  rows = redis.call('ZRANGEBYSCORE', wk, '(' .. NOWS, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #rows do out[#out + 1] = rows[i] end
end
return out
