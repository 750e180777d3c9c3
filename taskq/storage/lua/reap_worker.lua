-- reap_worker: return the jobs of a dead worker and remove it.
-- Called by the supervisor the moment a child dies (expected_hb = ""), and
-- by reapers when a worker's heartbeat stopped (expected_hb = the value the
-- reaper saw unchanged for a whole heartbeat_timeout: if the worker beat
-- since, nothing happens -- no stampede after a server pause).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] worker id  ARGV[3] expected_hb or ""
-- ARGV[4] failed cap  ARGV[5] error history cap  ARGV[6] finished ttl_ms
-- ARGV[7] error entry for "worker lost" (msgpack)
-- ARGV[8] id of the job the worker was running ("" = unknown: every held
--   job counts as attempted)  ARGV[9] kind: lost | timeout | shutdown
--   (shutdown: every held job goes back to the front, attempt refunded)
-- ARGV[10] error entry for the running job  ARGV[11] delay_ms of its retry
--   (-1: it must not retry: fail it whatever its attempts)
-- Returns {reaped(1|0), id1, outcome1, ...}; outcome is queued | scheduled
--   | failed, requeued (kind lost, within the job's max_lost: attempt
--   refunded, `lc` counted) or released (a prefetched job that never
--   started: attempt refunded).
-- A job lost with its worker (kind lost) goes back to the head of its queue
-- with its attempt refunded while its loss count `lc` is within max_lost;
-- past that a loss counts as a failed attempt (retried while attempts
-- remain, else failed as WorkerLost): a job that kills its worker every
-- time runs at most max_lost + retry + 1 times.
-- A job requeued while it ran (`rr`, requeue.lua) goes back to its queue
-- (the front if asked), attempt refunded, whatever the kind: outcome
-- requeued.
-- Invariants: every job in P wj:<worker> leaves it in one step, either back
-- in its queue, in P sched, or failed; locks and slots are freed with the
-- lease (a requeued job's too: it kept them until now); the fencing token
-- is bumped so a late outcome from the worker is discarded.
-- The error entries come without the attempt (one entry serves every job):
-- each job's copy gets the attempt it was on.
local function with_attempt(blob, attempt)
  local ok, e = pcall(cmsgpack.unpack, blob)
  if not ok or type(e) ~= 'table' then return blob end
  e.attempt = tonumber(attempt or '0')
  return cmsgpack.pack(e)
end

local wid, expected = ARGV[2], ARGV[3]
if expected ~= '' then
  local hb = redis.call('ZSCORE', P .. 'workers', wid)
  if hb and string.format('%d', tonumber(hb)) ~= expected then return {0} end
end
CAPS.failed = tonumber(ARGV[4]); CAPS.errors = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local lost_blob, running, rkind, rblob, rdue = ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local wj = P .. 'wj:' .. wid
local out = {1}
for _, id in ipairs(redis.call('SMEMBERS', wj)) do
  local jk = jkey(id)
  local j = redis.call('HMGET', jk, 's', 'w', 't', 'q', 'p', 'r', 'u', 'a', 'fc', 'rr')
  if j[1] == 'active' and j[2] == wid then
    local task, queue = j[3], j[4]
    redis.call('HINCRBY', jk, 'k', 1)
    release_lock(id, j[6])
    release_flow(id, task, queue, j[9], j[6])
    local outcome
    if j[10] then
      -- requeued while it ran (requeue.lua): what the operator asked for
      -- happens now, the lock and slots freed above; attempt refunded
      redis.call('HINCRBY', jk, 'a', -1)
      redis.call('HDEL', jk, 'rr', 'cr')
      redis.call('HSET', jk, 's', 'queued')
      push_ready(id, queue, j[5], j[10] == '2')
      if rkind == 'shutdown' or (running ~= '' and id ~= running) then uncount_start(task, queue) end
      outcome = 'requeued'
    elseif rkind == 'shutdown' or (running ~= '' and id ~= running) then
      redis.call('HINCRBY', jk, 'a', -1)
      redis.call('HSET', jk, 's', 'queued')
      push_ready(id, queue, j[5], true)
      uncount_start(task, queue)
      outcome = 'released'
    else
      local blob = lost_blob
      if id == running then blob = rblob end
      if blob ~= '' then blob = with_attempt(blob, j[8]) end
      if rkind == 'timeout' and id == running then count(task, queue, 'timed_out') end
      append_error(jk, blob, CAPS.errors)
      if rkind == 'lost' and redis.call('HINCRBY', jk, 'lc', 1) <= max_lost(jk, task) then
        -- the worker died under it: back to the head of its queue, attempt refunded
        redis.call('HINCRBY', jk, 'a', -1)
        redis.call('HSET', jk, 's', 'queued')
        push_ready(id, queue, j[5], true)
        count(task, queue, 'lost')
        outcome = 'requeued'
      elseif tonumber(j[8] or '0') >= max_attempts(jk, task) or (id == running and rdue < 0) then
        finalize(id, jk, 'failed', j[7], ttl, 0, blob)
        count(task, queue, 'failed')
        outcome = 'failed'
      elseif id == running and rdue > 0 then
        redis.call('HSET', jk, 's', 'scheduled', 'due', fmt(NOW + rdue))
        schedule(id, NOW + rdue)
        count(task, queue, 'retried')
        outcome = 'scheduled'
      else
        redis.call('HSET', jk, 's', 'queued')
        push_ready(id, queue, j[5], true)
        count(task, queue, 'retried')
        outcome = 'queued'
      end
    end
    out[#out + 1] = id; out[#out + 1] = outcome
  end
end
redis.call('DEL', wj, P .. 'w:' .. wid)
redis.call('ZREM', P .. 'workers', wid)
flush()
return out
