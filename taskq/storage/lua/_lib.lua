-- Shared functions of every transition. taskq/storage/scripts.py builds
-- from this file and the scripts one Redis function library (FUNCTION LOAD,
-- called with FCALL: this file runs once per load, not per call), and, for
-- servers without functions, standalone scripts (this file + one script).
--
-- Conventions (see docs/architecture.md for the key layout):
--   * KEYS[1] is the namespace prefix key "{ns}:" (in the queue key layout,
--     a queue's "{ns:queue}:") -- every key a script touches starts with
--     it, so a script touches one cluster slot. What must reach another
--     slot goes through its outbox (flush_outbox, deliver.lua).
--   * ARGV[1] is now_ms: an integer in milliseconds, or "" to use the
--     server's clock (TIME). Tests pass it; production passes "".
--   * Times are integer milliseconds; durations end in _ms.
--   * Job hash fields (short names keep memory per job low):
--       t task  q queue  p priority  d payload  o per-call options
--       s state  c created_ms  a attempts  k fencing token  w worker
--       sa started_ms  f finished_ms  due due_ms  u unique key
--       r resource  ol on_locked  m max attempts  g signature
--       res result  err error history (msgpack list)  pr progress
--       rq requeue count  cc cancel count  cr cancel requested (1|2)
--       sk skipped because of job  wt someone waits for the outcome
--       ps state before stall  fr a scheduled job goes to the front when due
--       lc times its worker was lost (SIGKILL, OOM, a vanished machine)
--       n mark of the enqueue call that created it
--       pa parents: msgpack {parent id, index, ...} (workflows, see below);
--          a parent in another queue's slot has {index, queue} for index
--       wq a handle's other queues holding jobs of its workflow
--       dn number of dependencies  dm how their values reach it: one|all|err
--       df on a dependency's failure: cancel|run|collect|onfail
--       op its workflow's enqueue is still sending  wk kind of a workflow handle
--       tt "<succeeded ttl_ms>:<failed ttl_ms>" of a job that finishes itself
--       dc the job whose failure ended it  di that job's root_info (msgpack)
--       le its link_error job
--       fc flow-control spec  pk limiter that holds it back (parked)
--       rd "<delay_ms>:<eta_ms>" of a waiting job, applied when it is released
--       rr requeue asked for while it ran (1, or 2: to the front; requeue.lua)
--   (taskq/storage/records.py names the same fields for Python)

-- Per-call state, set by begin() at the start of every call: as a script,
-- from the KEYS/ARGV globals; in the function library, from FCALL's
-- arguments. Calls never interleave (Redis runs one at a time).
local KEYS, ARGV, P, NOW
-- NOW as a decimal string, for command arguments: Redis 7.0 formats a Lua
-- number passed to redis.call with %.17g, the C library's slow floating-point
-- path. For the 13-digit time, passed three times per job, that was 7% of a
-- claim and settle's server instructions. (Small numbers format quickly, and
-- Valkey formats every number quickly: string.format would cost more there.)
local NOWS
local CAPS = {}  -- index caps; reset by begin(), set from ARGV by some scripts

local function now_ms()
  local a = ARGV[1]
  if a ~= nil and a ~= '' then return tonumber(a) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function jkey(id) return P .. 'j:' .. id end
local function fmt(n) return string.format('%d', n) end  -- an integer argument, formatted cheaply

-- ---------------------------------------------------------------- stats
-- Counters are summed in Lua tables keyed by plain names (no string is built
-- per job) and written once at the end of the script, so a batch of 100
-- outcomes costs a handful of HINCRBYs.
--   COUNTS[queue][task][counter]  event counts (count())
--   HIST[task][bucket]            run-time histogram (hist())
-- flush_stats() writes them as two fields per event (readers sum them per
-- task, per queue and per namespace; queue names never contain ':'):
--   P st:c         '<queue>:<task>|<counter>'  all time
--   P st:m:<min>   'q:<queue>|<counter>'       that minute
-- and the histogram as P st:h:<task> '<bucket>' and 'sum_ms'.
local COUNTS, HIST
-- how long a per-minute bucket lives (keys.py MINUTE_BUCKET_TTL_MS)
local MINUTE_TTL_MS = 7200000

local function count(task, queue, counter, n)
  local q = COUNTS[queue]
  if not q then q = {}; COUNTS[queue] = q end
  local t = q[task]
  if not t then t = {}; q[task] = t end
  t[counter] = (t[counter] or 0) + (n or 1)
end

local function hist(task, bucket, ms)
  local h = HIST[task]
  if not h then h = {sum_ms = 0}; HIST[task] = h end
  h[bucket] = (h[bucket] or 0) + 1
  h.sum_ms = h.sum_ms + ms
end

-- A leased job handed back unstarted: its claim does not count as a start.
local function uncount_start(task, queue) count(task, queue, 'started', -1) end

-- HINCRBYs `fields` (name -> n, zeros skipped) into `key`; true if one of
-- the fields is new.
local function incr_fields(key, fields)
  local created = false
  for field, n in pairs(fields) do
    if n ~= 0 and redis.call('HINCRBY', key, field, n) == n then created = true end
  end
  return created
end

local function flush_stats()
  local all, minute = {}, {}
  for queue, tasks in pairs(COUNTS) do
    for task, counters in pairs(tasks) do
      for counter, n in pairs(counters) do
        all[queue .. ':' .. task .. '|' .. counter] = n
        local f = 'q:' .. queue .. '|' .. counter
        minute[f] = (minute[f] or 0) + n
      end
    end
  end
  incr_fields(P .. 'st:c', all)
  -- a per-minute bucket expires after 2 h (set when one of its fields is new)
  local mk = P .. 'st:m:' .. string.format('%d', math.floor(NOW / 60000))
  if incr_fields(mk, minute) then redis.call('PEXPIRE', mk, MINUTE_TTL_MS) end
  for task, h in pairs(HIST) do incr_fields(P .. 'st:h:' .. task, h) end
end

-- ---------------------------------------------------------------- ready lists
-- A queue is one list per priority level: P q:<queue>:<prio>, consumed with
-- RPOP (FIFO: producers LPUSH; front=true RPUSHes). P qp:<queue> is a zset of
-- the non-empty levels scored -prio, so ZRANGE yields the highest first.
-- P qn:<queue> holds at most one wake-up marker for workers blocked in BLPOP.

local function wake_queue(queue)
  local nk = P .. 'qn:' .. queue
  if redis.call('LLEN', nk) == 0 then redis.call('LPUSH', nk, '1') end
end

-- A level is registered in P qp:<queue> and the queue's sleepers woken only
-- when a push makes its list non-empty: a worker that claims and leaves
-- work behind passes the wake-up on (settle_claim), so a push onto a
-- non-empty list has nobody to wake. (Workers also re-check every
-- block_timeout, which bounds any wake-up that could still be missed.)
local function push_ready(id, queue, prio, front)
  local lk = P .. 'q:' .. queue .. ':' .. prio
  local len
  if front then len = redis.call('RPUSH', lk, id) else len = redis.call('LPUSH', lk, id) end
  if len > 1 then return end
  if redis.call('ZADD', P .. 'qp:' .. queue, -tonumber(prio), prio) == 1 then
    redis.call('SADD', P .. 'queues', queue)
  end
  wake_queue(queue)
end

-- Pushes deferred to the end of the call (enqueue only: nothing in the call
-- reads the lists after it pushes), one LPUSH/RPUSH per list instead of one
-- per job. PUSHES: list key -> {queue, prio, front, id, id, ...}.
local PUSHES

local function push_ready_later(id, queue, prio, front)
  local lk = P .. 'q:' .. queue .. ':' .. prio
  if front then lk = lk .. '\0' end  -- the front pushes of a list: their own batch
  local b = PUSHES[lk]
  if not b then b = {queue, prio, front}; PUSHES[lk] = b end
  b[#b + 1] = id
end

-- Runs the deferred pushes: the same lists, levels and wake-ups as
-- push_ready() job by job (FIFO order kept: LPUSH a b c = LPUSH a, b, c).
local function flush_pushes()
  for _, b in pairs(PUSHES) do
    local queue, prio, front = b[1], b[2], b[3]
    local lk = P .. 'q:' .. queue .. ':' .. prio
    local cmd = 'LPUSH'
    if front then cmd = 'RPUSH' end
    local n = #b - 3
    local len
    for i = 4, #b, 2000 do
      local l = redis.call(cmd, lk, unpack(b, i, math.min(i + 1999, #b)))
      if not len then len = l end
    end
    if len == math.min(n, 2000) then  -- the list was empty: register its level, wake a sleeper
      if redis.call('ZADD', P .. 'qp:' .. queue, -tonumber(prio), prio) == 1 then
        redis.call('SADD', P .. 'queues', queue)
      end
      wake_queue(queue)
    end
  end
end

local function remove_ready(id, queue, prio)
  return redis.call('LREM', P .. 'q:' .. queue .. ':' .. prio, 1, id)
end

-- ---------------------------------------------------------------- schedule
-- P sched: zset id -> due_ms of every scheduled job (delayed and retrying).
-- P schedw: wake-up list for schedulers sleeping until the next due time.
local function schedule(id, due)
  local sk = P .. 'sched'
  redis.call('ZADD', sk, fmt(due), id)
  local first = redis.call('ZRANGE', sk, 0, 0)[1]
  if first == id and redis.call('LLEN', P .. 'schedw') == 0 then
    redis.call('LPUSH', P .. 'schedw', '1')
  end
end

-- ---------------------------------------------------------------- links
-- Unique key P u:<key> -> job id; resource lock P l:<res> -> job id;
-- waiters for a resource P lw:<res> (list of job ids in state 'waiting').

local function release_unique(id, ukey)
  if ukey then
    local uk = P .. 'u:' .. ukey
    if redis.call('GET', uk) == id then redis.call('DEL', uk) end
  end
end

-- Gives a free resource's turn to the oldest job that still waits for it
-- (pushed to the front of its queue; it takes the lock when claimed).
local function hand_off(res)
  local wk = P .. 'lw:' .. res
  while true do
    local wid = redis.call('RPOP', wk)
    if not wid then return end
    local w = redis.call('HMGET', jkey(wid), 's', 'q', 'p')
    if w[1] == 'waiting' then
      redis.call('HSET', jkey(wid), 's', 'queued')
      push_ready(wid, w[2], w[3], true)
      return
    end
  end
end

-- Frees the resource if `id` holds it and hands it to the oldest waiter.
local function release_lock(id, res)
  if not res then return end
  local lk = P .. 'l:' .. res
  if redis.call('GET', lk) ~= id then return end
  redis.call('DEL', lk)
  hand_off(res)
end

-- ---------------------------------------------------------------- errors
local function append_error(jk, blob, keep)
  if not blob or blob == '' then return end
  local cur = redis.call('HGET', jk, 'err')
  local list = {}
  if cur then
    local ok, old = pcall(cmsgpack.unpack, cur)
    if ok and type(old) == 'table' then list = old end  -- a garbled history is dropped
  end
  table.insert(list, blob)
  while #list > keep do table.remove(list, 1) end
  redis.call('HSET', jk, 'err', cmsgpack.pack(list))
end

-- ---------------------------------------------------------------- finishing
-- Terminal states: succeeded failed cancelled skipped expired.
-- finalize() keeps the invariants of a finished job in one place:
--   * it is in exactly one finished index (P failed or P done) -- added
--     when the script ends (flush(): every script calling finalize ends
--     with it, so no call leaves a finished job unindexed) -- until the
--     index's cap trims its entry (the job stays until its TTL);
--   * its unique key is freed;
--   * its hash expires after ttl_ms (0 = keep);
--   * waiters (P r:<id> list, BLMOVEd onto itself so every waiter wakes)
--     and subscribers (P events) hear the outcome when someone asked.
-- Caps come from the CAPS table a script fills from its ARGV.

-- States of a job that has not finished.
local LIVE = {scheduled = true, queued = true, active = true, waiting = true, stalled = true}

-- The finished index (P done or P failed, without the prefix) of each
-- finished state. An index entry outlives its job's hash until
-- trim_finished drops it, and a custom id may be used again meanwhile: an
-- entry whose id now names a job of another state (live, or finished into
-- the other index) is stale, and never stands for that job.
local FINISHED_IN = {succeeded = 'done', cancelled = 'done', skipped = 'done', expired = 'done', failed = 'failed'}

-- FINISHED: ids finished in this call per index, added at flush() with one
-- ZADD per index (then trimmed once), not one ZADD + ZCARD per job.
local FINISHED
-- DELIVER: outcomes of jobs with parents finished in this call, applied to
-- their parents by flush_deliveries() (see the workflows section)
local DELIVER
-- FOREVER[index] true: this call finished a job of that index without expiry
local FOREVER
-- OUTBOX: what this call leaves for jobs in other queues' slots (the queue
-- key layout), RPUSHed onto P ob by flush(); see the workflows section.
local OUTBOX

-- `wt`: the job's `wt` field when the caller already read it (false = not
-- set); nil reads it here. `res`: the result to store in the hash, if kept.
-- `pa`: the job's `pa` field when the caller already read it (false = not
-- set); nil reads it here. A job with parents queues its outcome for them.
local function finalize(id, jk, state, ukey, ttl_ms, keep_ms, blob, wt, res, pa)
  if pa == nil then pa = redis.call('HGET', jk, 'pa') end
  if pa then DELIVER[#DELIVER + 1] = {id, state, blob or '', pa} end
  if res then
    redis.call('HSET', jk, 's', state, 'f', NOWS, 'res', res)
  else
    redis.call('HSET', jk, 's', state, 'f', NOWS)
  end
  release_unique(id, ukey)
  local idx = P .. 'done'
  if state == 'failed' then idx = P .. 'failed' end
  local f = FINISHED[idx]
  if not f then f = {}; FINISHED[idx] = f end
  f[#f + 1] = NOWS; f[#f + 1] = id
  if ttl_ms > 0 then redis.call('PEXPIRE', jk, ttl_ms) else FOREVER[idx] = true end
  if wt == nil then wt = redis.call('HGET', jk, 'wt') end
  if keep_ms > 0 or wt then
    local rk = P .. 'r:' .. id
    -- one outcome per key: one left by an earlier run of this id is dropped
    if redis.call('RPUSH', rk, cmsgpack.pack({state, blob or ''})) > 1 then
      redis.call('LTRIM', rk, -1, -1)
    end
    local exp = keep_ms
    if exp <= 0 then exp = 600000 end
    redis.call('PEXPIRE', rk, exp)
    if wt then redis.call('PUBLISH', P .. 'events', id .. ' ' .. state) end
  end
end

-- Runs `cmd key <items...>` in chunks (Lua's unpack has a stack limit).
local function call_chunked(cmd, key, items, step)
  for i = 1, #items, step do
    redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, #items)))
  end
end

-- Adds the jobs finished in this call to their index; an index is trimmed in
-- steps (at 5% over its cap), not on every finished job. The cap bounds the
-- index (what listings show), not how long a job stays readable: a job
-- trimmed from it keeps its hash (and outcome) until its TTL, so app.job(id)
-- finds it as long as succeeded_ttl / failed_ttl say. Where jobs are kept
-- without expiry (the call finished its jobs of this index with ttl 0) the
-- trimmed ones are deleted: then the cap is their retention, and memory
-- stays bounded.
local function flush_finished()
  for idx, items in pairs(FINISHED) do
    call_chunked('ZADD', idx, items, 2000)
    local cap = CAPS.done
    if idx == P .. 'failed' then cap = CAPS.failed end
    if redis.call('ZCARD', idx) > cap + math.floor(cap / 20) then
      local old = redis.call('ZRANGE', idx, 0, -(cap + 1))
      redis.call('ZREMRANGEBYRANK', idx, 0, -(cap + 1))
      if FOREVER[idx] then
        local name = string.sub(idx, #P + 1)
        local keys = {}  -- deleted with one DEL per 1000 keys, not one per job
        for _, oid in ipairs(old) do
          -- a stale entry (FINISHED_IN) is dropped, its id's job kept: by now it
          -- may be a new job (a reused custom id), live or in the other index
          local st = redis.call('HGET', jkey(oid), 's')
          if not st or FINISHED_IN[st] == name then
            keys[#keys + 1] = jkey(oid); keys[#keys + 1] = P .. 'r:' .. oid
          end
        end
        for i = 1, #keys, 1000 do redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys))) end
      end
    end
  end
end

-- ---------------------------------------------------------------- workflows
-- A job may wait for others (its dependencies) in state 'waiting' (with
-- `dn` set; a job waiting for a resource has `r` instead):
--   P dp:<id>  set of its dependencies not yet finished (pending)
--   P dv:<id>  hash of what the finished ones left: '<index>' -> value
--              (msgpack) of a success, 'x<index>' -> the state of any other
--              end, 'f' -> the first dependency that did not succeed
-- and each dependency names it in its `pa` field with its index. When a
-- dependency finishes, finalize() queues its outcome (DELIVER) and the end
-- of the call applies it to every parent (flush_deliveries, also called by
-- settle_claim between its settle and claim parts): the dependency's id
-- moves from the parent's pending set to its processed hash, so a job that
-- finishes twice (run again after its worker was lost) counts once; when
-- none is pending (and the enqueue that made the parent has ended: `op`)
-- the parent is released -- queued with the values it takes spliced into
-- its arguments, or, for a workflow handle (`wk`), finished with the
-- workflow's outcome. A dependency that failed cancels the parent
-- (df=cancel, naming it in `dc` and its error), or counts like a success
-- (run), or is recorded for the outcome (collect: handles; onfail:
-- link_error jobs, which run only when one failed).
-- P wm:<id>  list of the jobs of a workflow handle (cancel, inspection);
--   it and P dv:<id> of a handle expire with the handle.
-- All of it is in the namespace's slot: one script. (Across slots a
-- finishing job would instead record "deliver outcome of M to W" in its own
-- slot, applied idempotently by a deliverer pass: see docs/workflows.md.)

-- A msgpack array header of n elements.
local function array_header(n)
  if n < 16 then return string.char(0x90 + n) end
  if n < 65536 then return string.char(0xdc, math.floor(n / 256), n % 256) end
  return string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

-- The payload (msgpack [args, kwargs]) with `value` (msgpack) as its first
-- argument, spliced as bytes (values keep every msgpack type exactly). A
-- payload not of that form is left alone (the worker fails it as undecodable).
local function prepend_arg(payload, value)
  if string.byte(payload, 1) ~= 0x92 then return payload end
  local b = string.byte(payload, 2)
  local n, hl
  if b and b >= 0x90 and b <= 0x9f then n = b - 0x90; hl = 1
  elseif b == 0xdc then
    n = string.byte(payload, 3) * 256 + string.byte(payload, 4); hl = 3
  elseif b == 0xdd then
    local b3, b4, b5, b6 = string.byte(payload, 3, 6)
    n = ((b3 * 256 + b4) * 256 + b5) * 256 + b6; hl = 5
  else return payload end
  return '\146' .. array_header(n + 1) .. value .. string.sub(payload, 2 + hl)
end

-- The values of dependencies 0..n-1 of a parent, as one msgpack array
-- (nil where one left none).
local function values_list(vk, n)
  local parts = {array_header(n)}
  for i = 0, n - 1, 1000 do
    local fields = {}
    for k = i, math.min(i + 999, n - 1) do fields[#fields + 1] = tostring(k) end
    local vals = redis.call('HMGET', vk, unpack(fields))
    for k = 1, #fields do parts[#parts + 1] = vals[k] or '\192' end
  end
  return table.concat(parts)
end

local function ttls(tt)
  local a, b = string.match(tt or '', '^(%d+):(%d+)$')
  return tonumber(a) or 0, tonumber(b) or 0
end

-- What a dependency that did not succeed tells the jobs waiting for it:
-- its root cause, the job that first failed down the line, as {root id,
-- task, state, error type, message}. A job ended for a dependency keeps
-- its root's in `di`, as the root may be in another queue's slot.
local function root_info(dep)
  local d = redis.call('HMGET', jkey(dep), 'dc', 'di')
  if d[2] then
    local ok, t = pcall(cmsgpack.unpack, d[2])
    if ok and type(t) == 'table' then return t end
  end
  local root = d[1] or dep
  local r = redis.call('HMGET', jkey(root), 't', 's', 'err')
  local etype, msg = 'DependencyFailed', ''
  if r[3] then
    local ok, l = pcall(cmsgpack.unpack, r[3])
    if ok and type(l) == 'table' and l[#l] then
      local ok2, e = pcall(cmsgpack.unpack, l[#l])
      if ok2 and type(e) == 'table' then etype = e.type or etype; msg = e.message or '' end
    end
  end
  return {root, r[1] or '?', r[2] or '', etype, msg}
end

-- An error entry naming the dependency `dep` that ended `dstate`, with the
-- type and message of its root cause's last error (`info`: root_info(dep),
-- read here if nil). Returns the root's id, the entry and the info.
local function dependency_error(dep, dstate, kind, info)
  info = info or root_info(dep)
  local root, msg = info[1], info[5]
  local st = info[3]
  if st == '' then st = dstate end
  local text = 'step ' .. root .. ' (' .. info[2] .. ') ' .. st
  if msg ~= '' then text = text .. ': ' .. msg end
  if root ~= dep then text = text .. ' (via ' .. dep .. ')' end
  return root, cmsgpack.pack({type = info[4], kind = kind, traceback = '', attempt = 0, at = NOW / 1000,
    message = text, job = root}), info
end

-- The root cause of the first dependency of a parent that did not succeed
-- (`failed`, from its `dv` hash, which keeps the cause as `fi`).
local function failed_info(vk, failed)
  local raw = redis.call('HGET', vk, 'fi')
  if raw then
    local ok, t = pcall(cmsgpack.unpack, raw)
    if ok and type(t) == 'table' then return t end
  end
  return root_info(failed)
end

-- Ends a waiting parent that will not run: its keys go, its outcome is
-- delivered to its own parents in turn.
local function end_waiting(pid, pk, state, blob, root, count_it, info)
  redis.call('DEL', P .. 'dp:' .. pid)
  local p = redis.call('HMGET', pk, 't', 'q', 'u', 'tt', 'wk', 'wq')
  local ok_ttl, fail_ttl = ttls(p[4])
  local ttl = fail_ttl
  if state == 'succeeded' or state == 'skipped' then ttl = ok_ttl end
  if root then redis.call('HSET', pk, 'dc', root, 'di', cmsgpack.pack(info)) end
  if blob ~= '' and state ~= 'succeeded' then append_error(pk, blob, CAPS.errors) end
  local keep = 0
  if p[5] then
    keep = ttl  -- a handle keeps its outcome for result() as long as it lives
    if ttl > 0 then
      redis.call('PEXPIRE', P .. 'dv:' .. pid, ttl)
      redis.call('PEXPIRE', P .. 'wm:' .. pid, ttl)
      -- its members' lists in other queues' slots expire with it
      for q in string.gmatch(p[6] or '', '%S+') do
        OUTBOX[#OUTBOX + 1] = cmsgpack.pack({q, 'x', pid, fmt(ttl)})
      end
    end
  else
    redis.call('DEL', P .. 'dv:' .. pid)
  end
  local res = nil
  if state == 'succeeded' then res = blob end
  finalize(pid, pk, state, p[3], ttl, keep, blob, nil, res)
  if count_it and not p[5] then count(p[1], p[2], state) end
end

-- Every dependency of a parent has finished: queue it (or schedule it, for
-- its own delay or eta: `rd`), or finish a handle.
local function release(pid, pk)
  local p = redis.call('HMGET', pk, 'wk', 'dm', 'dn', 'd', 'q', 'p', 'df', 'rd')
  local vk = P .. 'dv:' .. pid
  local failed = redis.call('HGET', vk, 'f')
  local finfo = failed and failed_info(vk, failed)
  if p[1] then
    if failed then
      local st = finfo[3]
      if st ~= 'cancelled' then st = 'failed' end
      local root, blob, info = dependency_error(failed, st, st, finfo)
      end_waiting(pid, pk, st, blob, root, false, info)
    else
      local value
      if p[2] == 'all' then value = values_list(vk, tonumber(p[3]))
      else value = redis.call('HGET', vk, '0') or '\192' end
      end_waiting(pid, pk, 'succeeded', value, nil, false)
    end
    return
  end
  if p[7] == 'onfail' and not failed then
    end_waiting(pid, pk, 'skipped', '', nil, true)
    return
  end
  local value = nil
  if p[2] == 'one' then value = redis.call('HGET', vk, '0') or '\192'
  elseif p[2] == 'all' then value = values_list(vk, tonumber(p[3]))
  elseif p[2] == 'err' then value = cmsgpack.pack(failed and finfo[1] or '') end
  if value then redis.call('HSET', pk, 'd', prepend_arg(p[4], value)) end
  redis.call('DEL', vk)
  if p[8] then
    -- its own delay counts from now; an eta still ahead is kept
    redis.call('HDEL', pk, 'rd')
    local dl, eta = string.match(p[8], '^(%d*):(%d*)$')
    local due = NOW + (tonumber(dl) or 0)
    if (tonumber(eta) or 0) > due then due = tonumber(eta) end
    if due > NOW then
      redis.call('HSET', pk, 's', 'scheduled', 'due', fmt(due))
      schedule(pid, due)
      return
    end
  end
  redis.call('HSET', pk, 's', 'queued')
  push_ready(pid, p[5], p[6], false)
end

-- Dependency `dep` of `pid` (its index `idx`) ended `state` (`blob`: its
-- value if it succeeded; `info`: its root_info() when it did not, read here
-- if nil). Counted once: only the call that moves it out of the pending set
-- applies it.
local function deliver(dep, state, blob, pid, idx, info)
  local dk = P .. 'dp:' .. pid
  if redis.call('SREM', dk, dep) == 0 then return end
  local pk = jkey(pid)
  local p = redis.call('HMGET', pk, 's', 'df', 'op', 'dm', 'wk')
  if p[1] ~= 'waiting' then return end
  local vk = P .. 'dv:' .. pid
  if state == 'succeeded' then
    if blob ~= '' and (p[4] == 'one' or p[4] == 'all' or p[5]) then redis.call('HSET', vk, idx, blob) end
  else
    redis.call('HSET', vk, 'x' .. idx, state)
    info = info or root_info(dep)
    if redis.call('HSETNX', vk, 'f', dep) == 1 then redis.call('HSET', vk, 'fi', cmsgpack.pack(info)) end
    if p[2] == 'cancel' then
      local root, eb, ri = dependency_error(dep, state, 'cancelled', info)
      end_waiting(pid, pk, 'cancelled', eb, root, true, ri)
      return
    end
  end
  if not p[3] and redis.call('SCARD', dk) == 0 then release(pid, pk) end
end

-- Applies the outcomes queued by finalize() to their parents; a parent
-- that ends in turn queues its own (a chain cancelled step by step).
local function flush_deliveries()
  local i = 1
  while i <= #DELIVER do
    local d = DELIVER[i]
    local ok, ps = pcall(cmsgpack.unpack, d[4])
    if ok and type(ps) == 'table' then
      for k = 1, #ps - 1, 2 do
        local at = ps[k + 1]
        if type(at) == 'table' then
          -- a parent in another queue's slot ({index, queue}): through the outbox
          local info = ''
          if d[2] ~= 'succeeded' then info = root_info(d[1]) end
          OUTBOX[#OUTBOX + 1] = cmsgpack.pack({tostring(at[2]), 'd', d[1], d[2], d[3], ps[k], tostring(at[1]), info})
        else
          deliver(d[1], d[2], d[3], ps[k], tostring(at))
        end
      end
    end
    i = i + 1
  end
  DELIVER = {}
end

-- Ends the sending of a workflow for parent `pid`: released if nothing is
-- pending.
local function seal(pid)
  local pk = jkey(pid)
  if redis.call('HGET', pk, 'op') == false then return end
  redis.call('HDEL', pk, 'op')
  if redis.call('HGET', pk, 's') == 'waiting' and redis.call('SCARD', P .. 'dp:' .. pid) == 0 then
    release(pid, pk)
  end
end

-- The outbox P ob: a list of msgpack entries {queue, kind, ...} for the
-- slot of `queue`, applied there by deliver.lua (an idempotent step: a
-- delivery counts only when it leaves its parent's pending set) and then
-- removed by whoever applied it -- the scheduler of this slot, woken here,
-- or any later pass of it if that one died in between. Kinds:
--   d  dep, state, value, parent id, index, root_info or ''
--   x  handle id, ttl_ms: its members' list here expires with it
local function flush_outbox()
  local n = #OUTBOX
  if n == 0 then return 0 end
  call_chunked('RPUSH', P .. 'ob', OUTBOX, 1000)
  OUTBOX = {}
  if redis.call('LLEN', P .. 'schedw') == 0 then redis.call('LPUSH', P .. 'schedw', '1') end
  return n
end

-- The end of every script that changes jobs: counters and finished indexes.
-- Returns the number of entries it left in the outbox.
local function flush()
  flush_deliveries()
  local sent = flush_outbox()
  flush_pushes()
  flush_finished()
  flush_stats()
  return sent
end

-- The limits workers registered for a task in P tasks: "<max attempts>" or
-- "<max attempts>:<max lost>" (nil for what is not registered).
local function task_limits(task)
  local v = redis.call('HGET', P .. 'tasks', task)
  if not v then return nil, nil end
  local a, l = string.match(v, '^(%d+):(%d+)$')
  if a then return tonumber(a), tonumber(l) end
  return tonumber(v), nil
end

-- Max attempts of a job: its own `m`, else the value workers registered for
-- its task, else 1.
local function max_attempts(jk, task)
  local m = redis.call('HGET', jk, 'm')
  if m then return tonumber(m) end
  local a = task_limits(task)
  return a or 1
end

-- How many times a job may lose its worker without using an attempt: its
-- per-call `max_lost` (in its options `o`), else the registered value, else 2.
local function max_lost(jk, task)
  local o = redis.call('HGET', jk, 'o')
  if o then
    local ok, opts = pcall(cmsgpack.unpack, o)
    if ok and type(opts) == 'table' and tonumber(opts.max_lost) then return tonumber(opts.max_lost) end
  end
  local _, l = task_limits(task)
  return l or 2
end

-- ---------------------------------------------------------------- flow control
-- A job with limits or an expiry carries its spec in `fc` (set at enqueue):
--   "<expires_ms>|<rate count>|<rate period_ms>|<burst>|<concurrency>|<resource limit>|<rate key>"
-- (empty = none; the rate key last, so it may hold '|'). Its limiters
-- (docs/flow-control.md), each counted per queue (every key names the queue):
--   t:<task> or k:<rate key>  rate: GCRA, one time per limiter, P fr:<queue>:<limiter>
--                             = the theoretical arrival time (ms); a start is
--                             allowed while TAT - tau <= now, then TAT = max(TAT, now) + T
--                             (T = period / count, tau = (burst - 1) * T)
--   c:<task>                  concurrency: P fs:<queue>:<limiter> = ids of the active jobs
--   s:<resource>              a resource's semaphore (resource_limit > 1): likewise
-- A job a limit holds back is parked: state 'waiting', `pk` = its limiter, its
-- id in P fh:<queue>:<limiter> (oldest at the right), no attempt used.
-- P fp:<queue> scores each limiter holding jobs back with when to look at it
-- again: a rate limiter at its next allowed start; a concurrency limiter at a
-- recheck (FLOW_RECHECK_MS), for a settle that frees a slot moves a job back
-- at once. The scheduler's flow_pass looks at the due limiters.
-- P xp:<queue>: the queue's jobs with an expiry, scored by it.

local FLOW_PATTERN = '^(%d*)|(%d*)|(%d*)|(%d*)|(%d*)|(%d*)|(.*)$'
local FLOW_RECHECK_MS = 5000
-- per call: FLOWC[queue:limiter] = its score in P fp:<queue> (false: none);
-- FULL[slots key] = true once found full (after dropping stale holders)
local FLOWC, FULL

local function flow_parse(fc)
  local e, rn, rms, rb, cn, sn, rk = string.match(fc, FLOW_PATTERN)
  if not e then return nil end  -- not written by taskq: no limits
  local spec = {exp = tonumber(e), cn = tonumber(cn), sn = tonumber(sn), rk = rk}
  rn, rms = tonumber(rn), tonumber(rms)
  if rn and rms and rn > 0 then
    spec.rate = true
    spec.T = rms / rn
    spec.tau = ((tonumber(rb) or rn) - 1) * spec.T
  end
  return spec
end

local function rate_limiter(spec, task)
  if spec.rk ~= '' then return 'k:' .. spec.rk end
  return 't:' .. task
end

local function rate_key(queue, lim) return P .. 'fr:' .. queue .. ':' .. lim end
local function slots_key(queue, lim) return P .. 'fs:' .. queue .. ':' .. lim end
local function parked_key(queue, lim) return P .. 'fh:' .. queue .. ':' .. lim end

-- The limiter's TAT, never before now.
local function rate_tat(queue, lim)
  local tat = tonumber(redis.call('GET', rate_key(queue, lim))) or NOW
  if tat < NOW then tat = NOW end
  return tat
end

-- A scheduler sleeping until its next due time is woken for an earlier one.
local function wake_scheduler()
  if redis.call('LLEN', P .. 'schedw') == 0 then redis.call('LPUSH', P .. 'schedw', '1') end
end

-- Holds job `id` back under limiter `lim` of `queue`, to be looked at by `at` (ms).
local function park(id, jk, queue, lim, at)
  at = math.ceil(at)
  redis.call('HSET', jk, 's', 'waiting', 'pk', lim)
  redis.call('LPUSH', parked_key(queue, lim), id)
  local ck = queue .. ':' .. lim
  local cur = FLOWC[ck]
  if cur == nil then cur = tonumber(redis.call('ZSCORE', P .. 'fp:' .. queue, lim)) or false end
  if not cur or cur > at then
    redis.call('ZADD', P .. 'fp:' .. queue, fmt(at), lim)
    wake_scheduler()
    cur = at
  end
  FLOWC[ck] = cur
end

-- Moves up to k jobs limiter `lim` holds back to the front of their ready
-- lists, the oldest first; returns how many. Entries of jobs parked there no
-- more (cancelled, expired, requeued meanwhile) are dropped.
local function unpark(queue, lim, k)
  local hk = parked_key(queue, lim)
  local moved = {}  -- id, priority, id, priority, ...
  while #moved < 2 * k do
    local id = redis.call('RPOP', hk)
    if not id then break end
    local jk = jkey(id)
    local j = redis.call('HMGET', jk, 's', 'pk', 'p')
    if j[1] == 'waiting' and j[2] == lim then
      redis.call('HSET', jk, 's', 'queued')
      redis.call('HDEL', jk, 'pk')
      moved[#moved + 1] = id; moved[#moved + 1] = j[3]
    end
  end
  -- the oldest pushed last: the front of a list is what a claim takes next
  for i = #moved - 1, 1, -2 do push_ready(moved[i], queue, moved[i + 1], true) end
  if redis.call('LLEN', hk) == 0 then
    redis.call('ZREM', P .. 'fp:' .. queue, lim)
    FLOWC[queue .. ':' .. lim] = false
  end
  return #moved / 2
end

-- The free slots of a concurrency limiter of `n`. At the limit, holders that
-- are no longer active (a lease that ended on a path that did not free its
-- slot) are dropped first: a slot never outlives its lease.
local function free_slots(queue, lim, n)
  local sk = slots_key(queue, lim)
  local used = redis.call('SCARD', sk)
  if used < n or FULL[sk] then return n - used end
  for _, h in ipairs(redis.call('SMEMBERS', sk)) do
    if redis.call('HGET', jkey(h), 's') ~= 'active' then redis.call('SREM', sk, h) end
  end
  used = redis.call('SCARD', sk)
  if used >= n then FULL[sk] = true end
  return n - used
end

-- A job that did not start by its expiry ends as expired (never run).
local function expire(id, jk, task, queue, ttl)
  redis.call('ZREM', P .. 'xp:' .. queue, id)
  finalize(id, jk, 'expired', redis.call('HGET', jk, 'u') or nil, ttl, 0, '')
  count(task, queue, 'expired')
end

-- Judges a queued job with a spec at claim: false if it may start now (then
-- flow_take() records the start), true once it is expired, skipped (its
-- resource's slots are full, on_locked 'skip') or parked.
local function flow_judge(id, jk, task, queue, spec, res, ttl)
  if spec.exp and NOW >= spec.exp then
    expire(id, jk, task, queue, ttl)
    return true
  end
  if spec.cn and free_slots(queue, 'c:' .. task, spec.cn) <= 0 then
    park(id, jk, queue, 'c:' .. task, NOW + FLOW_RECHECK_MS)
    return true
  end
  if spec.sn and res and free_slots(queue, 's:' .. res, spec.sn) <= 0 then
    local how = redis.call('HMGET', jk, 'ol', 'u')
    if how[1] == 'wait' then
      park(id, jk, queue, 's:' .. res, NOW + FLOW_RECHECK_MS)
    else
      redis.call('HSET', jk, 'sk', redis.call('SRANDMEMBER', slots_key(queue, 's:' .. res)) or '')
      finalize(id, jk, 'skipped', how[2] or nil, ttl, 0, '')
      count(task, queue, 'skipped')
    end
    return true
  end
  if spec.rate then
    local lim = rate_limiter(spec, task)
    local at = rate_tat(queue, lim) - spec.tau
    if at > NOW then
      park(id, jk, queue, lim, at)
      return true
    end
  end
  return false
end

-- Records the start of a job flow_judge() let through: its slots, its rate.
local function flow_take(id, task, queue, spec, res)
  if spec.cn then redis.call('SADD', slots_key(queue, 'c:' .. task), id) end
  if spec.sn and res then redis.call('SADD', slots_key(queue, 's:' .. res), id) end
  if spec.rate then
    local lim = rate_limiter(spec, task)
    local tat = rate_tat(queue, lim) + spec.T
    -- kept while it is ahead of now: a missing key is the same as TAT = now
    redis.call('SET', rate_key(queue, lim), string.format('%.3f', tat), 'PX', fmt(math.ceil(tat - NOW) + 1000))
  end
end

-- Frees one slot of `lim` held by `id` and moves a job it holds back to the queue.
local function free_slot(queue, lim, id)
  local sk = slots_key(queue, lim)
  if redis.call('SREM', sk, id) == 1 then
    FULL[sk] = nil
    unpark(queue, lim, 1)
  end
end

-- The lease of job `id` ended (any outcome, reap, release): its slots free.
-- `fc`: its spec (nil: none); `res`: its resource.
local function release_flow(id, task, queue, fc, res)
  if not fc then return end
  local spec = flow_parse(fc)
  if not spec then return end
  if spec.cn then free_slot(queue, 'c:' .. task, id) end
  if spec.sn and res then free_slot(queue, 's:' .. res, id) end
end

-- The scheduler's look at limiter `lim` of `queue` (due in P fp:<queue>):
-- moves as many held jobs as the limiter allows now back to the queue (at
-- most 1000), and schedules the next look; returns how many it moved. The
-- oldest held job's spec is the one judged next, so its limit is used.
local function flow_look(queue, lim)
  local zk = P .. 'fp:' .. queue
  local first = redis.call('LINDEX', parked_key(queue, lim), -1)
  if not first then
    redis.call('ZREM', zk, lim)
    return 0
  end
  local spec = flow_parse(redis.call('HGET', jkey(first), 'fc') or '')
  local kind = string.sub(lim, 1, 1)
  local n, again = 1, NOW + FLOW_RECHECK_MS
  if spec and spec.rate and (kind == 't' or kind == 'k') then
    local tat = rate_tat(queue, lim)
    n = math.max(0, math.floor((NOW + spec.tau - tat) / spec.T) + 1)
    again = tat + n * spec.T - spec.tau
  elseif spec and (kind == 'c' or kind == 's') then
    local limit = spec.cn
    if kind == 's' then limit = spec.sn end
    if limit then n = free_slots(queue, lim, limit) end
  end
  n = math.min(n, 1000)
  local moved = 0
  if n > 0 then moved = unpark(queue, lim, n) end
  if redis.call('LLEN', parked_key(queue, lim)) == 0 then
    redis.call('ZREM', zk, lim)
  else
    redis.call('ZADD', zk, fmt(math.ceil(again)), lim)
  end
  return moved
end

-- Whether a queue is paused (P pz:<queue> present): its jobs wait, it takes new ones.
local function queue_paused(queue)
  return redis.call('EXISTS', P .. 'pz:' .. queue) == 1
end

-- The flow spec of new job `id` as stored: an expiry given as "+<ms>" counts
-- from now, on the server's clock, and the job is indexed by it (P xp:<queue>).
local function flow_store(id, queue, flow)
  local rel, rest = string.match(flow, '^%+(%d+)(|.*)$')
  if rel then flow = fmt(NOW + tonumber(rel)) .. rest end
  local exp = string.match(flow, '^(%d+)|')
  if exp then
    redis.call('ZADD', P .. 'xp:' .. queue, exp, id)
    redis.call('SADD', P .. 'queues', queue)  -- the scheduler's flow_pass looks at listed queues
  end
  return flow
end

-- An operator's requeue or unstall of a finished job (failed, cancelled,
-- skipped, expired, or stalled from failed) means run it: an expiry that
-- has passed (`always`: any, for an expired job) leaves its spec `fc` and
-- its index P xp:<queue>, or the claim or the flow pass would end it
-- expired at once. Its limits stay, and so does an expiry still ahead.
local function drop_passed_expiry(id, jk, queue, fc, always)
  if not fc then return end
  local exp = tonumber(string.match(fc, '^(%d*)|') or '')
  if not exp or (exp > NOW and not always) then return end
  redis.call('HSET', jk, 'fc', (string.gsub(fc, '^%d*|', '|')))
  redis.call('ZREM', P .. 'xp:' .. queue, id)
end

-- ---------------------------------------------------------------- enqueue
-- Creates one job. Returns id, created (true|false), state. A job id that
-- exists and a unique key held by an unfinished job both return that job
-- instead; one that carries `mark` (the calling enqueue's, see enqueue.lua)
-- was created by an earlier send of this call, and counts as created.
-- `check` false skips clearing an outcome an earlier job of the id left
-- behind: only for ids the caller has just generated and never sent before
-- (a resend always checks). `look` false skips looking for the id: only
-- when the caller has just seen that no job of it exists. Its push onto the ready list is deferred to
-- flush() (push_ready_later).

local function enqueue_one(check, look, later, id, task, queue, prio, data, opts, delay_ms, eta_ms,
                           ukey, uttl_ms, front, res, on_locked, maxa, sig, flow, mark)
  local jk = P .. 'j:' .. id
  -- `look` false: the caller found none of its ids (see enqueue.lua)
  local st = nil
  if look then st = redis.call('HGET', jk, 's') end
  if st then
    -- created by an earlier send of this same call (its reply was lost)
    if mark and redis.call('HGET', jk, 'n') == mark then return id, true, st end
    return id, false, st
  end
  if check then
    -- an outcome an earlier job of this id left behind (its hash expired
    -- before its kept result): it would answer the new job's result().
    -- Emptied with LTRIM, which producers may run (DEL they may not).
    redis.call('LTRIM', P .. 'r:' .. id, 1, 0)
  end
  if ukey ~= '' then
    local uk = P .. 'u:' .. ukey
    local holder = redis.call('GET', uk)
    if holder then
      local hs = redis.call('HGET', jkey(holder), 's')
      if hs and LIVE[hs] then return holder, false, hs end
    end
    if tonumber(uttl_ms) > 0 then
      redis.call('SET', uk, id, 'PX', uttl_ms)
    else
      redis.call('SET', uk, id)
    end
  end
  local due = NOW
  if delay_ms ~= '0' then due = NOW + tonumber(delay_ms) end
  if eta_ms ~= '0' then
    local eta = tonumber(eta_ms)
    if eta > due then due = eta end
  end
  local state = 'queued'
  if due > NOW then state = 'scheduled' end
  local f = {'t', task, 'q', queue, 'p', prio, 'd', data, 'c', NOWS, 's', state}
  local n = 12
  if opts ~= '' then f[n + 1] = 'o'; f[n + 2] = opts; n = n + 2 end
  if ukey ~= '' then f[n + 1] = 'u'; f[n + 2] = ukey; n = n + 2 end
  if res ~= '' then
    f[n + 1] = 'r'; f[n + 2] = res; f[n + 3] = 'ol'; f[n + 4] = on_locked; n = n + 4
  end
  if maxa ~= '' then f[n + 1] = 'm'; f[n + 2] = maxa; n = n + 2 end
  if sig ~= '' then f[n + 1] = 'g'; f[n + 2] = sig; n = n + 2 end
  if mark then f[n + 1] = 'n'; f[n + 2] = mark; n = n + 2 end
  if flow ~= '' then
    f[n + 1] = 'fc'; f[n + 2] = flow_store(id, queue, flow); n = n + 2
  end
  if state == 'scheduled' then
    f[n + 1] = 'due'; f[n + 2] = fmt(due); n = n + 2
    if front == '1' then f[n + 1] = 'fr'; f[n + 2] = '1' end  -- promote pushes it to the front
  end
  redis.call('HSET', jk, unpack(f))
  if state == 'scheduled' then
    schedule(id, due)
  elseif later then
    push_ready_later(id, queue, prio, front == '1')
  else
    push_ready(id, queue, prio, front == '1')
  end
  count(task, queue, 'enqueued')
  return id, true, state
end

-- Removes a not-active job from whatever index holds it (ready list,
-- schedule, resource waiters, stalled, finished indexes).
local function unindex(id, jk, st)
  local j = redis.call('HMGET', jk, 'q', 'p', 'r', 'pk', 'wk')
  if st == 'queued' then
    remove_ready(id, j[1], j[2])
    -- it may be the waiter a release handed the resource to: pass the turn on
    if j[3] and not redis.call('GET', P .. 'l:' .. j[3]) then hand_off(j[3]) end
  elseif st == 'scheduled' then redis.call('ZREM', P .. 'sched', id)
  elseif st == 'waiting' and j[4] then  -- parked by a flow limit
    redis.call('LREM', parked_key(j[1], j[4]), 1, id)
    redis.call('HDEL', jk, 'pk')
  elseif st == 'waiting' then
    if j[3] then redis.call('LREM', P .. 'lw:' .. j[3], 1, id) end
    redis.call('DEL', P .. 'dp:' .. id)  -- waited for dependencies: it no longer does
    if not j[5] then redis.call('DEL', P .. 'dv:' .. id) end  -- nor for their values (a handle keeps them)
  elseif st == 'stalled' then redis.call('ZREM', P .. 'stalled', id)
  elseif st == 'failed' then redis.call('ZREM', P .. 'failed', id)
  else redis.call('ZREM', P .. 'done', id) end
end

-- Cancels job `mid` (key `mk`, state `mst`, live): one that has not started
-- ends as cancelled and never runs; an active one is asked to stop
-- (cooperative: cr=1, forced: cr=2), learnt on its worker's next heartbeat,
-- and a requeue asked for while it ran (rr, requeue.lua) is withdrawn.
-- Returns 'cancelled' | 'requested'.
local function cancel_job(mid, mk, mst, force, ttl_ms)
  if mst == 'active' then
    local level = '1'
    if force then level = '2' end
    redis.call('HSET', mk, 'cr', level)
    redis.call('HDEL', mk, 'rr')
    redis.call('HINCRBY', mk, 'cc', 1)
    return 'requested'
  end
  unindex(mid, mk, mst)
  redis.call('HDEL', mk, 'due', 'fr', 'ps')
  redis.call('HINCRBY', mk, 'cc', 1)
  local j = redis.call('HMGET', mk, 't', 'q', 'u', 'wk')
  finalize(mid, mk, 'cancelled', j[3], ttl_ms, 0, '')
  if not j[4] then count(j[1], j[2], 'cancelled') end
  return 'cancelled'
end

-- Cancels the live jobs of workflow handle `hid` kept in this slot (its
-- P wm:<hid> list). Returns 'cancelled', or 'requested' if one was active.
local function cancel_members(hid, force, ttl_ms)
  local how = 'cancelled'
  for _, mid in ipairs(redis.call('LRANGE', P .. 'wm:' .. hid, 0, -1)) do
    local mk = jkey(mid)
    local mst = redis.call('HGET', mk, 's')
    if mst and LIVE[mst] and cancel_job(mid, mk, mst, force, ttl_ms) == 'requested' then how = 'requested' end
  end
  return how
end

-- ---------------------------------------------------------------- the reapers' watch
-- P reaper (hash): last = the server's time of the last pass of the watch
-- (a reaper's pass, or a worker's heartbeat: both prove the server ran and
-- the namespace reached it then); since = when the current watch began.
-- A gap longer than max_gap since the last pass (a server pause, a time no
-- process of the namespace reached the server) counts as max_gap of watch
-- and no more, the longest a gap may last without breaking the watch: a
-- worker that was cut off by it has at least timeout - max_gap of watched
-- time to beat again before it is judged. A clock that went back (more than
-- CLOCK_SLACK_MS), or no watch yet, starts it afresh. Never shortens what
-- the watch must see.
-- Returns restart ('' | 'new' | 'gap' | 'clock'), since.
-- Server time less than this behind the last pass is not a clock gone back
-- (a pass given a now from earlier in its caller's loop, a step of NTP).
local CLOCK_SLACK_MS = 1000

local function watch_tick(max_gap)
  local rk = P .. 'reaper'
  local r = redis.call('HMGET', rk, 'last', 'since')
  local last, since = tonumber(r[1]), tonumber(r[2])
  local restart = ''
  if not last or not since then restart, since = 'new', NOW
  elseif NOW < last - CLOCK_SLACK_MS then restart, since = 'clock', NOW
  elseif NOW - last > max_gap then restart, since = 'gap', math.max(since, NOW - max_gap) end
  -- a pass given a time a little behind the last (a caller's now) keeps the later one
  if restart == '' then last = math.max(NOW, last) else last = NOW end
  redis.call('HSET', rk, 'last', fmt(last), 'since', fmt(since))
  -- kept while the namespace passes; once gone a while, the next pass starts a new watch
  redis.call('PEXPIRE', rk, math.max(max_gap * 4, 60000))
  return restart, since
end

-- ---------------------------------------------------------------- per call
local function begin(keys, args)
  KEYS, ARGV = keys, args
  P = keys[1]
  NOW = now_ms()
  NOWS = fmt(NOW)
  COUNTS, HIST = {}, {}
  CAPS.failed, CAPS.done, CAPS.errors = 10000, 1000, 10
  FINISHED = {}
  FOREVER = {}
  PUSHES = {}
  DELIVER = {}
  OUTBOX = {}
  FLOWC, FULL = {}, {}
end
