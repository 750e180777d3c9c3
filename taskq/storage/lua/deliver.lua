-- deliver: applies entries of another queue's slot's outbox (P ob there,
-- see flush_outbox in _lib.lua) to the jobs of this slot they name: the
-- second step of every link between two slots (the queue key layout).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] done cap  ARGV[3] failed cap
-- ARGV[4] error history cap  ARGV[5..] entries, msgpack {queue, kind, ...}:
--   d  dep, state, value, parent id, index, root_info or '': dependency
--      `dep` of `parent` ended (deliver())
--   x  handle id, ttl_ms: the handle's members' list here expires with it
--   c  handle id, force, ttl_ms: the handle was cancelled; so are its
--      jobs kept here (cancel_members())
-- Invariant: applying an entry again changes nothing (a delivery counts
-- only when it moves `dep` out of the parent's pending set; a job already
-- finished is not cancelled), so an entry is applied at least once and
-- counts once: it leaves the outbox only after this call returned.
-- Returns the number of entries read.
CAPS.done, CAPS.failed, CAPS.errors = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, #ARGV do
  local ok, e = pcall(cmsgpack.unpack, ARGV[i])
  if ok and type(e) == 'table' then
    if e[2] == 'd' then
      local info = e[8]
      if type(info) ~= 'table' then info = nil end
      deliver(e[3], e[4], e[5], e[6], tostring(e[7]), info)
    elseif e[2] == 'x' then
      local ttl = tonumber(e[4]) or 0
      if ttl > 0 then redis.call('PEXPIRE', P .. 'wm:' .. e[3], ttl) end
    elseif e[2] == 'c' then
      cancel_members(e[3], e[4] == '1', tonumber(e[5]) or 0)
    end
  end
end
flush()
return #ARGV - 4
