-- reaper_pass: one look of a reaper at the workers' heartbeats; names the
-- workers whose silence the namespace's reapers have watched for a whole
-- heartbeat timeout. The watch lives on the server, in P reaper, shared by
-- every reaper of the namespace: a reaper process that starts continues the
-- watch of the ones before it, so recovery does not depend on any one
-- process living a whole timeout.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] heartbeat timeout_ms
-- ARGV[3] max_gap_ms: a longer time since the last pass of the watch (a
--   server pause, every process gone or cut off) counts as max_gap_ms only
--   (watch_tick in _lib.lua)
-- ARGV[4] most workers to name
-- P reaper (hash): see watch_tick (_lib.lua); worker heartbeats tick it too.
-- Returns {restart, since, now, wid1, hb1, ...}: restart is '' or why
--   the watch restarted in this pass (new | gap | clock); the workers named
--   beat last at least timeout_ms ago, or over a second later than now (a
--   beat from before the server's clock went back), and the watch has
--   lasted timeout_ms.
-- Invariant: a worker is named only if no heartbeat of it was written during
--   a watch of at least timeout_ms: a silence judged is one that the
--   namespace watched. A clock that goes back restarts the watch; a gap in
--   the passes counts as max_gap_ms at most; neither shortens it. The caller
--   reaps with the heartbeat it was given (reap_worker: nothing if the
--   worker beat since).
local timeout, max_gap, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local restart, since = watch_tick(max_gap)
local out = {restart, since, NOW}
if NOW - since >= timeout then
  local wk = P .. 'workers'
  local rows = redis.call('ZRANGEBYSCORE', wk, '-inf', fmt(NOW - timeout), 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #rows do out[#out + 1] = rows[i] end
  -- a heartbeat later than now (by more than the slack: not a beat written
  -- while the caller's now aged): written before the clock went back, and
  -- none since (a beat since would be earlier than now)
  rows = redis.call('ZRANGEBYSCORE', wk, '(' .. fmt(NOW + CLOCK_SLACK_MS), '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #rows do out[#out + 1] = rows[i] end
end
return out
