-- enqueue: create N jobs (N = 1 for .delay(), thousands for enqueue_many).
-- KEYS[1] namespace prefix
-- ARGV[1] now_ms or ""   ARGV[2] N
-- then 15 fields per job: id task queue prio payload opts delay_ms eta_ms
--   unique_key unique_ttl_ms front(0|1) resource on_locked max_attempts sig
--   (empty string = not set; eta_ms 0 = none)
-- Returns: one entry per job: its state (a string) if it was created, or
--   {existing job id, its state} if an existing job stands in for it.
-- Invariants: a job exists iff its hash exists; a new job is in exactly one
-- of (its ready list, P sched); an existing id or a unique key held by an
-- unfinished job creates nothing and returns that job.
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 15
  local r = enqueue_one(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4],
    ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ARGV[b + 9], ARGV[b + 10],
    ARGV[b + 11], ARGV[b + 12], ARGV[b + 13], ARGV[b + 14])
  if r[2] == 1 then out[i + 1] = r[3] else out[i + 1] = {r[1], r[3]} end
end
flush()
return out
