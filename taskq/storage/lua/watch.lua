-- watch: ask to be told when a job finishes. Marks the job (wt) so that
-- finalize() pushes its outcome to P r:<id> and publishes it; if the job
-- has already finished, returns the outcome at once (no wait can miss a
-- result that arrived before it began).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] job id
-- Returns {state, result-or-last-error blob} | {'', ''} when not found.
local jk = jkey(ARGV[2])
local j = redis.call('HMGET', jk, 's', 'res', 'err')
if not j[1] then return {'', ''} end
if LIVE[j[1]] then
  redis.call('HSET', jk, 'wt', '1')
  return {j[1], ''}
end
if j[1] == 'succeeded' then return {j[1], j[2] or ''} end
local last = ''
if j[3] then
  local ok, l = pcall(cmsgpack.unpack, j[3])
  if ok and type(l) == 'table' then last = l[#l] or '' end  -- a garbled history reads as empty
end
return {j[1], last}
