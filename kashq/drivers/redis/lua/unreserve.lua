-- Give reserved jobs back untouched, as if never handed out: same place in the
-- queue (their seq), delivery not counted. For prefetched jobs a worker will
-- not run (it is stopping, or the job ahead of them runs long).
-- KEYS[1] state  KEYS[2] ready  KEYS[3] reserved  KEYS[4] wake  KEYS[5] claims
-- ARGV pairs of id, token
-- Returns the number of jobs given back (a stale reservation is skipped).
local back = 0
for i = 1, #ARGV, 2 do
  local id, held_by = ARGV[i], ARGV[i + 1]
  local st = redis.call('HGET', KEYS[1], id)
  if st then
    local priority, seq, deliveries, holder = string.match(st, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if holder == held_by then
      redis.call('ZREM', KEYS[3], id)
      if not string.find(held_by, '.', 1, true) then redis.call('HDEL', KEYS[5], held_by) end
      deliveries = math.max(tonumber(deliveries) - 1, 0)
      redis.call('HSET', KEYS[1], id, priority .. '|' .. seq .. '|' .. deliveries .. '|')
      redis.call('ZADD', KEYS[2], -tonumber(priority), string.format('%015d|%s', tonumber(seq), id))
      back = back + 1
    end
  end
end
if back > 0 then
  redis.call('LPUSH', KEYS[4], 1)
  redis.call('LTRIM', KEYS[4], 0, 63)
end
return back
