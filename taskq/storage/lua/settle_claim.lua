-- settle_claim: record the outcomes of finished jobs, then claim new ones.
-- One call per batch on the hot path: a worker that finished 50 jobs acks
-- them and leases the next 50 in a single round trip.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] worker id  ARGV[3] claim count (0 = none)
-- ARGV[4] failed cap  ARGV[5] done cap  ARGV[6] error history cap
-- ARGV[7] ttl_ms of jobs this script finishes itself (skipped, or cancelled at claim)
-- ARGV[8] N outcomes, then 10 fields each:
--   id token kind blob due_ms ttl_ms keep_ms duration_ms bucket flag
--   kind: ok | fail | retry | requeue | cancel | release
--   blob: result (ok) or error entry (fail/retry/cancel), msgpack
--   due_ms: delay of a retry/requeue in ms from the server's now (0 = at once)
--   ttl_ms: expiry of the finished job's hash; keep_ms: result kept for
--     waiters this long (0 = not kept); bucket: run-time histogram bucket
--   flag: "timeout" counts the attempt as timed out as well
-- then M (number of queues), the queue names in priority order,
-- then T (number of allowed task names, 0 = all), the names.
-- Returns {settled flags..., claimed jobs...} as
--   {N, s1..sN, J, then 8 fields per claimed job:
--    id token attempts task payload opts sig queue}
--   s_i = 1 if outcome i was recorded, 0 if discarded by fencing (or
--   replaced by a requeue asked for while the job ran), 2 if it had been
--   recorded already: a resend after a lost reply. Every way a job leaves
--   a worker other than that worker's own outcome (reap, orphan release,
--   a requeue asked for while it ran, claim by another worker) bumps its
--   token, so a job that is no longer active but still carries this
--   worker and token got exactly this worker's outcome for that lease (one
--   outcome is sent per lease).
-- Invariants:
--   * a finished job's effect on the jobs waiting for it (workflows) is
--     applied in this same call (flush_deliveries, before the claim);
--   * fencing: an outcome is recorded only if the job is active, held by
--     this worker, and carries the same token (HINCRBY'd at every claim);
--   * a claimed job is in P wj:<worker> and nowhere else (no instant when a
--     job lives only in a worker's memory); leases are added and removed in
--     batches (one SADD/SREM per call), which Redis runs as one step with
--     the rest of the call;
--   * attempts are counted at claim, so a job that kills its worker every
--     time still exhausts its attempts;
--   * a resource lock is held only by an active job and freed with its lease;
--     so are concurrency and resource slots. A job requeued while it ran
--     (`rr`, requeue.lua) keeps them until its attempt's outcome arrives
--     here: then they free, the outcome is discarded and the job queued
--     (attempt refunded, cancel request withdrawn), in this one step;
--   * a worker that claims is in P workers (a reaper can see its leases).
local wid = ARGV[2]
local want = tonumber(ARGV[3])
CAPS.failed = tonumber(ARGV[4]); CAPS.done = tonumber(ARGV[5]); CAPS.errors = tonumber(ARGV[6])
local wj = P .. 'wj:' .. wid
local SKIP_TTL = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local out = {n}
local b = 9
local released = {}  -- leases ended by these outcomes: one SREM below
for i = 1, n do
  local id, token, kind = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local blob, due = ARGV[b + 3], tonumber(ARGV[b + 4])
  local ttl, keep, dur = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local bucket, flag = ARGV[b + 8], ARGV[b + 9]
  b = b + 10
  local jk = jkey(id)
  -- the priority is read only when the job goes back to a queue (below)
  local j = redis.call('HMGET', jk, 's', 'k', 'w', 't', 'q', 'r', 'u', 'wt', 'pa', 'fc', 'rr')
  if j[1] ~= 'active' or j[2] ~= token or j[3] ~= wid then
    if j[1] and j[2] == token and j[3] == wid then out[#out + 1] = 2 else out[#out + 1] = 0 end
  elseif j[11] then
    -- requeued while it ran (requeue.lua): its lease ends here, and only
    -- here its lock and slots free; the outcome is discarded, the job queued
    out[#out + 1] = 0
    released[#released + 1] = id
    release_lock(id, j[6])
    release_flow(id, j[4], j[5], j[10], j[6])
    if kind == 'release' then uncount_start(j[4], j[5]) end
    redis.call('HINCRBY', jk, 'k', 1)  -- a resend of this outcome is discarded too
    redis.call('HINCRBY', jk, 'a', -1)
    redis.call('HDEL', jk, 'rr', 'cr')  -- the requeue withdraws a cancel request
    redis.call('HSET', jk, 's', 'queued')
    push_ready(id, j[5], redis.call('HGET', jk, 'p'), j[11] == '2')
  else
    out[#out + 1] = 1
    local task, queue, wt = j[4], j[5], j[8] or false
    released[#released + 1] = id
    release_lock(id, j[6])
    release_flow(id, task, queue, j[10], j[6])
    if flag == 'timeout' then count(task, queue, 'timed_out') end
    if kind ~= 'release' and kind ~= 'requeue' then
      hist(task, bucket, dur)
    end
    if kind == 'retry' then
      append_error(jk, blob, CAPS.errors)
      if due > 0 then
        redis.call('HSET', jk, 's', 'scheduled', 'due', fmt(NOW + due))
        schedule(id, NOW + due)
      else
        redis.call('HSET', jk, 's', 'queued')
        push_ready(id, queue, redis.call('HGET', jk, 'p'), false)
      end
      count(task, queue, 'retried')
    elseif kind == 'requeue' or kind == 'release' then
      redis.call('HINCRBY', jk, 'a', -1)
      if kind == 'requeue' then
        redis.call('HINCRBY', jk, 'rq', 1)
        count(task, queue, 'requeued')
      else
        uncount_start(task, queue)
      end
      if due > 0 then
        redis.call('HSET', jk, 's', 'scheduled', 'due', fmt(NOW + due))
        schedule(id, NOW + due)
      else
        redis.call('HSET', jk, 's', 'queued')
        push_ready(id, queue, redis.call('HGET', jk, 'p'), kind == 'release')
      end
    elseif kind == 'ok' then
      finalize(id, jk, 'succeeded', j[7], ttl, keep, blob, wt, keep > 0 and blob or nil, j[9])
      count(task, queue, 'succeeded')
    elseif kind == 'cancel' then
      append_error(jk, blob, CAPS.errors)
      finalize(id, jk, 'cancelled', j[7], ttl, keep, blob, wt, nil, j[9])
      count(task, queue, 'cancelled')
    else
      append_error(jk, blob, CAPS.errors)
      finalize(id, jk, 'failed', j[7], ttl, keep, blob, wt, nil, j[9])
      count(task, queue, 'failed')
    end
  end
end
-- workflows: what these outcomes release is queued before the claim below
flush_deliveries()

-- before the claim: a job retried at once may be leased again just below
if #released > 0 then call_chunked('SREM', wj, released, 1000) end

-- ---- claim
local nq = tonumber(ARGV[b]); b = b + 1
local queues = {}
for _ = 1, nq do
  -- a paused queue gives no job (it still takes new ones)
  if want == 0 or not queue_paused(ARGV[b]) then queues[#queues + 1] = ARGV[b] end
  b = b + 1
end
local nt = tonumber(ARGV[b]); b = b + 1
local allowed = nil
if nt > 0 then
  allowed = {}
  for i = 1, nt do allowed[ARGV[b]] = true; b = b + 1 end
end

local claimed = {}
local leased = {}  -- added to P wj:<worker> with one SADD, in this same call
local got = 0
-- jobs a call may look at: those a limit holds back do not count in `got`,
-- and a long run of them is parked over several calls, not one long call
local budget = want + 1000

-- A queued job whose hash lacks a field every later step relies on (task,
-- queue, priority, payload) was not written by taskq: it is failed here,
-- never leased, so no script downstream meets the gap. Kept (no expiry)
-- until the failed index's cap or an operator removes it.
-- j: the HMGET of take() (t = j[4], q = j[5], p = j[6], d = j[9]).
local function fail_malformed(id, jk, j)
  local missing = {}
  if not j[4] then missing[#missing + 1] = 't' end
  if not j[5] then missing[#missing + 1] = 'q' end
  if not j[6] then missing[#missing + 1] = 'p' end
  if not j[9] then missing[#missing + 1] = 'd' end
  if #missing == 0 then return false end
  local blob = cmsgpack.pack({
    type = 'ValueError', kind = 'error', traceback = '', attempt = 0, at = NOW / 1000,
    message = 'undecodable payload: the job hash lacks field(s) ' .. table.concat(missing, ', ') ..
      ' (it was not written by taskq)'})
  append_error(jk, blob, CAPS.errors)
  finalize(id, jk, 'failed', redis.call('HGET', jk, 'u') or nil, 0, 0, blob)
  count(j[4] or '', j[5] or '', 'failed')
  return true
end

-- Tries to lease job `id` (already removed from its ready list): one HMGET
-- reads what every lease needs, one HSET writes the lease. Fields only the
-- rare paths need (unique key, on_locked) are read there: each field read
-- or written through redis.call costs the server as much as a small command.
local function take(id)
  local jk = jkey(id)
  local j = redis.call('HMGET', jk, 's', 'r', 'cr', 't', 'q', 'p', 'a', 'k', 'd', 'o', 'g', 'fc')
  if j[1] ~= 'queued' then return end
  if fail_malformed(id, jk, j) then return end
  local task, queue = j[4], j[5]
  if j[3] then
    -- its cancel was asked for while it was leased (then the worker died, handed
    -- it back, or it retried): the request stands, the job does not run again
    local blob = cmsgpack.pack({type = 'Cancelled', kind = 'cancelled', traceback = '', at = NOW / 1000,
      attempt = tonumber(j[7] or '0'), message = 'cancelled before it ran again'})
    append_error(jk, blob, CAPS.errors)
    finalize(id, jk, 'cancelled', redis.call('HGET', jk, 'u') or nil, SKIP_TTL, 0, blob)
    count(task, queue, 'cancelled')
    return
  end
  -- flow control (_lib.lua): expired, or held back by a limit (parked)
  local spec = j[12] and flow_parse(j[12])
  if spec and flow_judge(id, jk, task, queue, spec, j[2], SKIP_TTL) then return end
  local res = j[2]
  if res and not (spec and spec.sn) then  -- resource_limit > 1: a semaphore (flow_judge)
    local lk = P .. 'l:' .. res
    local holder = redis.call('GET', lk)
    if holder and holder ~= id and redis.call('HGET', jkey(holder), 's') == 'active' then
      local how = redis.call('HMGET', jk, 'ol', 'u')
      if how[1] == 'wait' then
        redis.call('HSET', jk, 's', 'waiting', 'sk', holder)
        redis.call('LPUSH', P .. 'lw:' .. res, id)
      else
        redis.call('HSET', jk, 'sk', holder)
        finalize(id, jk, 'skipped', how[2] or nil, SKIP_TTL, 0, '')
        count(task, queue, 'skipped')
      end
      return
    end
    redis.call('SET', lk, id)
  end
  local attempt = (tonumber(j[7]) or 0) + 1
  local token = (tonumber(j[8]) or 0) + 1
  redis.call('HSET', jk, 's', 'active', 'w', wid, 'sa', NOWS, 'a', attempt, 'k', token)
  leased[#leased + 1] = id
  if spec then flow_take(id, task, queue, spec, res) end
  count(task, queue, 'started')
  local c = #claimed
  claimed[c + 1] = id; claimed[c + 2] = token; claimed[c + 3] = attempt
  claimed[c + 4] = task; claimed[c + 5] = j[9]; claimed[c + 6] = j[10] or ''
  claimed[c + 7] = j[11] or ''; claimed[c + 8] = queue
  got = got + 1
end

if want > 0 then
  -- a worker a reaper removed while it lived (a late heartbeat) is listed
  -- again before it leases anything: a lease of a worker no reaper can see
  -- would outlive the worker (its next beat may never come)
  redis.call('ZADD', P .. 'workers', 'NX', NOWS, wid)
  for _, q in ipairs(queues) do
    if got >= want then break end
    local pk = P .. 'qp:' .. q
    for _, pr in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
      local lk = P .. 'q:' .. q .. ':' .. pr
      if allowed then
        local ids = redis.call('LRANGE', lk, -200, -1)
        for i = #ids, 1, -1 do
          if got >= want then break end
          local t = redis.call('HGET', jkey(ids[i]), 't')
          if allowed[t] then
            redis.call('LREM', lk, -1, ids[i])
            take(ids[i])
          end
        end
      else
        local drained = false
        while got < want do
          if budget <= 0 then wake_queue(q); break end  -- the rest for the next claim
          local ask = math.min(want - got, budget)
          budget = budget - ask
          local ids = redis.call('RPOP', lk, ask)
          if not ids then drained = true; break end
          for _, id in ipairs(ids) do take(id) end
          if #ids < ask then drained = true; break end
        end
        -- a short RPOP emptied the list; a full one may have: LLEN tells
        if drained or redis.call('LLEN', lk) == 0 then redis.call('ZREM', pk, pr) end
      end
      if allowed and redis.call('LLEN', lk) == 0 then redis.call('ZREM', pk, pr) end
      if got >= want then break end
    end
    -- more work left: pass the wake-up on to another sleeping worker
    if got >= want and redis.call('ZCARD', pk) > 0 then wake_queue(q) end
  end
end
if #leased > 0 then call_chunked('SADD', wj, leased, 1000) end
out[#out + 1] = got
for i = 1, #claimed do out[#out + 1] = claimed[i] end
-- last, after the claimed jobs: 1 if it left entries in the outbox (the
-- worker applies them at once rather than leave them to the scheduler)
if flush() > 0 then out[#out + 1] = 1 end
return out
