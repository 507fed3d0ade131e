-- Remove finished jobs that have tags, each if the caller still holds it, and take it
-- out of its tags' indexes (lua/ack.lua does the rest, for jobs without tags).
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] reserved  KEYS[4] claims  KEYS[5] tags
-- KEYS[6...] tag indexes
-- ARGV for each job: id, reservation token, n, then the KEYS numbers of its n tags' indexes
-- Returns how many were removed (a stale reservation, handed to another, is skipped).
local removed, i = 0, 1
while i <= #ARGV do
  local id, held_by, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local st = redis.call('HGET', KEYS[2], id)
  if st and string.match(st, '|([^|]*)$') == held_by then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    if not string.find(held_by, '.', 1, true) then redis.call('HDEL', KEYS[4], held_by) end
    for k = i + 3, i + 2 + n do
      local index = KEYS[tonumber(ARGV[k])]
      redis.call('ZREM', index, id)
      if redis.call('EXISTS', index) == 0 then redis.call('SREM', KEYS[5], index) end
    end
    removed = removed + 1
  end
  i = i + 3 + n
end
return removed
