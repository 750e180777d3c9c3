-- enqueue_flow: create the jobs of a workflow (chain, group, chord, or one
-- job with depends_on), parents before the jobs they wait for; a big one
-- in several calls, the last of which seals it.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""
-- ARGV[2] E, then E ids of existing jobs some row depends on: if one does
--   not exist the call returns {-1, id} and writes nothing
-- then one group: n, cols, the 26 fields of a template row, and n x #cols
--   values (as in enqueue.lua: each row is the template with the fields
--   numbered in `cols` replaced by its own). The 26 fields: the 16 of
--   enqueue.lua, then
--   17 kind: '' a job that runs | chain | group | chord: a workflow handle
--   18 parents: msgpack {parent id, index, ...}, or ''; a parent in another
--      queue's slot has {index, its queue} for index (kept as is in `pa`:
--      its outcome goes there through the outbox, see _lib.lua)
--   19 dn: how many dependencies it waits for (0: queued at once)
--   20 dm: '' | one | all | err (how their values reach it)
--   21 df: cancel | run | collect | onfail
--   22 tt: "<succeeded ttl_ms>:<failed ttl_ms>" if it may finish itself
--   23 existing: msgpack {id, index, ...} of existing jobs it waits for, or ''
--   24 handle: the id of the workflow handle it belongs to, or ''
--   25 remote: msgpack {id, ...} of its dependencies created in other
--      queues' slots (their outcomes come through the outbox), or ''
--   26 wq: a handle's other queues holding jobs of its workflow
--      (space-separated), or ''
-- then S and S ids of parents to seal (the last call of the workflow).
-- Returns {1} | {-1, missing id}.
-- Invariants: a row whose job exists already (an earlier send of this call
-- whose reply was lost) is skipped; a parent exists before any job that
-- names it, with the dependencies in other slots in its pending set from
-- the start; a parent is released only once sealed with nothing pending, so
-- a job that finishes while later calls are still sending counts all the
-- same; an existing dependency that finished counts at once.
local a = 2
local ne = tonumber(ARGV[a]); a = a + 1
for i = 0, ne - 1 do
  if redis.call('EXISTS', jkey(ARGV[a + i])) == 0 then return {-1, ARGV[a + i]} end
end
a = a + ne

local members = {}  -- handle id -> ids to RPUSH onto P wm:<handle>

local function add_parents(id, jk, pa)
  if pa == '' then return end
  local ps = cmsgpack.unpack(pa)
  for k = 1, #ps - 1, 2 do
    if type(ps[k + 1]) ~= 'table' then redis.call('SADD', P .. 'dp:' .. ps[k], id) end
  end
  redis.call('HSET', jk, 'pa', pa)
end

-- `pid` also waits for existing job `eid` (index idx)
local function wait_existing(pid, eid, idx)
  local ek = jkey(eid)
  local e = redis.call('HMGET', ek, 's', 'res', 'pa')
  redis.call('SADD', P .. 'dp:' .. pid, eid)
  if LIVE[e[1]] then
    local ps = {}
    if e[3] then
      local ok, old = pcall(cmsgpack.unpack, e[3])
      if ok and type(old) == 'table' then ps = old end
    end
    ps[#ps + 1] = pid; ps[#ps + 1] = idx
    redis.call('HSET', ek, 'pa', cmsgpack.pack(ps))
  else
    deliver(eid, e[1], e[2] or '', pid, tostring(idx))
  end
end

local function create(f)
  local id = f[1]
  local jk = jkey(id)
  if redis.call('EXISTS', jk) == 1 then return end
  local kind, dn = f[17], tonumber(f[19])
  if kind == '' and dn == 0 then
    enqueue_one(false, false, true, id, f[2], f[3], f[4], f[5], f[6], f[7], f[8], '', '0', f[11],
      f[12], f[13], f[14], f[15], f[16], nil)
  else
    local h = {'t', f[2], 'q', f[3], 'p', f[4], 'd', f[5], 'c', NOWS, 's', 'waiting', 'dn', f[19],
      'df', f[21], 'tt', f[22], 'op', '1'}
    if f[20] ~= '' then h[#h + 1] = 'dm'; h[#h + 1] = f[20] end
    if kind ~= '' then h[#h + 1] = 'wk'; h[#h + 1] = kind end
    if f[6] ~= '' then h[#h + 1] = 'o'; h[#h + 1] = f[6] end
    if f[12] ~= '' then
      h[#h + 1] = 'r'; h[#h + 1] = f[12]; h[#h + 1] = 'ol'; h[#h + 1] = f[13]
    end
    if f[14] ~= '' then h[#h + 1] = 'm'; h[#h + 1] = f[14] end
    if f[15] ~= '' then h[#h + 1] = 'g'; h[#h + 1] = f[15] end
    if f[16] ~= '' then h[#h + 1] = 'fc'; h[#h + 1] = flow_store(id, f[3], f[16]) end
    if f[26] ~= '' then h[#h + 1] = 'wq'; h[#h + 1] = f[26] end
    if kind == '' and ((f[7] ~= '' and f[7] ~= '0') or (f[8] ~= '' and f[8] ~= '0')) then
      h[#h + 1] = 'rd'; h[#h + 1] = f[7] .. ':' .. f[8]  -- its delay / eta, applied at release
    end
    redis.call('HSET', jk, unpack(h))
    if kind == '' then count(f[2], f[3], 'enqueued') end
  end
  add_parents(id, jk, f[18])
  if f[25] ~= '' then
    for _, dep in ipairs(cmsgpack.unpack(f[25])) do redis.call('SADD', P .. 'dp:' .. id, dep) end
  end
  if f[23] ~= '' then
    local es = cmsgpack.unpack(f[23])
    for k = 1, #es - 1, 2 do wait_existing(id, es[k], es[k + 1]) end
  end
  if f[24] ~= '' then
    local m = members[f[24]]
    if not m then m = {}; members[f[24]] = m end
    m[#m + 1] = id
  end
end

local n = tonumber(ARGV[a])
local cols = {}
if ARGV[a + 1] ~= '' then
  for c in string.gmatch(ARGV[a + 1], '%d+') do cols[#cols + 1] = tonumber(c) end
end
local f = {}
for i = 1, 26 do f[i] = ARGV[a + 1 + i] end
a = a + 28
local nc = #cols
for _ = 1, n do
  for i = 1, nc do f[cols[i]] = ARGV[a]; a = a + 1 end
  create(f)
end
for hid, ids in pairs(members) do call_chunked('RPUSH', P .. 'wm:' .. hid, ids, 1000) end
local ns = tonumber(ARGV[a]); a = a + 1
for i = 0, ns - 1 do seal(ARGV[a + i]) end
flush()
return {1}
