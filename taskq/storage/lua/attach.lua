-- attach: job `pid` of another queue's slot waits for job `eid` of this
-- one (depends_on across queues; its pending set names `eid` already). A
-- live `eid` names `pid` among its parents with {index, queue}, so its end
-- goes there through the outbox; one that has finished leaves its outcome
-- in the outbox at once.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] eid  ARGV[3] pid  ARGV[4] index
-- ARGV[5] pid's queue
-- Invariant: sent again (a lost reply), it names `pid` once; an outcome
-- left twice counts once (deliver.lua).
-- Returns 1 | -1 (no job `eid`).
local eid, pid, idx, queue = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local ek = jkey(eid)
local e = redis.call('HMGET', ek, 's', 'res', 'pa')
if not e[1] then return -1 end
if LIVE[e[1]] then
  local ps = {}
  if e[3] then
    local ok, old = pcall(cmsgpack.unpack, e[3])
    if ok and type(old) == 'table' then ps = old end
  end
  for k = 1, #ps - 1, 2 do
    if ps[k] == pid then return 1 end
  end
  ps[#ps + 1] = pid; ps[#ps + 1] = {idx, queue}
  redis.call('HSET', ek, 'pa', cmsgpack.pack(ps))
  return 1
end
local info = ''
if e[1] ~= 'succeeded' then info = root_info(eid) end
OUTBOX[#OUTBOX + 1] = cmsgpack.pack({queue, 'd', eid, e[1], e[2] or '', pid, fmt(idx), info})
flush()
return 1
