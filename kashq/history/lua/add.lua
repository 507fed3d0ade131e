-- Add series to one span of the metrics history, capping how many series it holds.
-- KEYS[1] the span (HASH <prefix>:history:<span>:<minute>: JSON [queue, job type] -> JSON numbers)
-- ARGV[1] time to live of the key after this write, ms
-- ARGV[2] the most series the span holds; a further one is added to ARGV[3]'s
-- ARGV[3] the field of the series that takes the rest ("(other)", "(other)")
-- ARGV[4..] pairs: a series' field, its numbers (a JSON array in the order of
--           kashq.history.base.FIGURES; entries 6 and 9, the longest run and wait, merge by max)
-- Returns how many series the span holds.
local span, cap, other = KEYS[1], tonumber(ARGV[2]), ARGV[3]
for i = 4, #ARGV, 2 do
  local field, add = ARGV[i], cjson.decode(ARGV[i + 1])
  local old = redis.call('HGET', span, field)
  if not old and redis.call('HLEN', span) >= cap then
    field = other
    old = redis.call('HGET', span, field)
  end
  if old then
    local was = cjson.decode(old)
    for k = 1, #add do
      if k == 6 or k == 9 then
        add[k] = math.max(add[k], was[k] or 0)
      else
        add[k] = add[k] + (was[k] or 0)
      end
    end
  end
  redis.call('HSET', span, field, cjson.encode(add))
end
redis.call('PEXPIRE', span, ARGV[1])
return redis.call('HLEN', span)
