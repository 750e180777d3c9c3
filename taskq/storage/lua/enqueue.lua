-- enqueue: create jobs (1 for .delay(), up to thousands for enqueue_many).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""
-- ARGV[2] '1' to clear what an earlier job of each id left behind, '0' when
--   every id was generated for this call and never sent before (a resend
--   sends '1'); an existing job of the id is looked for either way. Longer:
--   '1' plus a mark of the call, stored with the jobs it creates, so that a
--   resend finding a job with its own mark reports it as created.
-- then groups until the end: n, cols, the 16 fields of a template job, and
--   n x #cols values: each job is the template with the fields numbered in
--   `cols` (space-separated, 1-based) replaced by its own values, in order.
-- The 16 fields: id task queue prio payload opts delay_ms eta_ms unique_key
--   unique_ttl_ms front(0|1) resource on_locked max_attempts sig flow
--   (flow: the flow-control spec, see _lib.lua, its expiry absolute or "+<ms>")
--   (empty string = not set; delay_ms/eta_ms 0 = none)
-- Returns: one entry per job: its state (a string) if it was created (by
--   this send, or by an earlier send of this call: the mark), or
--   {existing job id, its state} if an existing job stands in for it.
-- Invariants: a job exists iff its hash exists; a new job is in exactly one
-- of (its ready list, P sched) when the call returns; an existing id or a
-- unique key held by an unfinished job creates nothing and returns that job.
local check = ARGV[2] ~= '0'
local mark = nil
if #ARGV[2] > 1 then mark = ARGV[2] end
local later = #ARGV > 20  -- more than one job: one push per list, at the end

-- Every send looks for its ids, fresh ones too: a first send run late (a
-- paused server, a retransmitted packet) after its resend created the jobs
-- and a worker leased one must not reset a job or push it again. A first
-- send of fresh ids asks once for the whole call (one EXISTS per 1,000
-- ids, not one HGET per job): only such a late send finds any.
local look = check
if not check then
  local keys = {}
  local a = 3
  while a <= #ARGV do
    local n = tonumber(ARGV[a])
    local nc, idcol = 0, nil
    for c in string.gmatch(ARGV[a + 1], '%d+') do
      nc = nc + 1
      if c == '1' then idcol = nc end
    end
    local template_id = ARGV[a + 2]
    a = a + 18
    for _ = 1, n do
      if idcol then keys[#keys + 1] = P .. 'j:' .. ARGV[a + idcol - 1]
      else keys[#keys + 1] = P .. 'j:' .. template_id end
      a = a + nc
    end
  end
  for i = 1, #keys, 1000 do
    -- pcall: an ACL written before EXISTS was listed looks per job instead
    local found = redis.pcall('EXISTS', unpack(keys, i, math.min(i + 999, #keys)))
    if type(found) ~= 'number' or found > 0 then
      look = true
      break
    end
  end
end

local out = {}
local a = 3
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local cols = {}
  if ARGV[a + 1] ~= '' then
    for c in string.gmatch(ARGV[a + 1], '%d+') do cols[#cols + 1] = tonumber(c) end
  end
  local f = {ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7],
    ARGV[a + 8], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11], ARGV[a + 12], ARGV[a + 13],
    ARGV[a + 14], ARGV[a + 15], ARGV[a + 16], ARGV[a + 17]}
  a = a + 18
  local nc = #cols
  for _ = 1, n do
    for i = 1, nc do f[cols[i]] = ARGV[a]; a = a + 1 end
    local id, created, st = enqueue_one(check, look, later, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8],
      f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[16], mark)
    if created then out[#out + 1] = st else out[#out + 1] = {id, st} end
  end
end
flush()
return out
