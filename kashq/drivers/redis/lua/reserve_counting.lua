-- The prelude of reserve_counting (joined after count_batch and before reserve.lua,
-- which it wraps in a function; reserve_counted.lua closes it): count completed jobs
-- of batches, then acknowledge and reserve as reserve.lua does, in one step, so no
-- job is acknowledged before it is counted. Plain Redis only: a batch's keys and the
-- queue's are two hash tags.
-- KEYS: reserve.lua's, then each batch's record and jobs keys.
-- ARGV: reserve.lua's, then for each batch its jobs' ids and how many; then the
-- state they ended, the time, and how many batches. All are taken off the end, so
-- reserve.lua below sees exactly its own arguments.
-- Returns reserve.lua's reply, then each batch's count_batch reply (false for nil), in
-- the order given, then how many batches.
local batches, now, new = tonumber(table.remove(ARGV)), table.remove(ARGV), table.remove(ARGV)
local counted = {}
for b = batches, 1, -1 do
  local n, last = tonumber(table.remove(ARGV)), #ARGV
  local ids = {}
  for i = last - n + 1, last do ids[#ids + 1] = ARGV[i] end
  for _ = 1, n do table.remove(ARGV) end
  local jobs_key = table.remove(KEYS)
  local record_key = table.remove(KEYS)
  counted[b] = count_batch(record_key, jobs_key, new, now, ids) or false
end
local reply = (function()
