-- fire_periodic: enqueue one tick of a periodic task, at most once.
-- P cron is a hash name -> last tick (ms) enqueued. The check and the
-- enqueue are one step, so three schedulers firing the same tick create one
-- job.
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""  ARGV[2] periodic name  ARGV[3] tick_ms
-- ARGV[4..19] the 16 enqueue fields (see enqueue.lua)
-- ARGV[20] '1' to enqueue, '0' to only advance past the tick (catch-up skip)
-- Returns {fired(1|0), last_tick_ms}.
local ck = P .. 'cron'
local last = tonumber(redis.call('HGET', ck, ARGV[2]) or '-1')
local tick = tonumber(ARGV[3])
if last >= tick then return {0, last} end
redis.call('HSET', ck, ARGV[2], ARGV[3])
if ARGV[20] ~= '1' then return {0, tick} end
enqueue_one(true, true, false, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11],
  ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17], ARGV[18], ARGV[19])
flush()
return {1, tick}
