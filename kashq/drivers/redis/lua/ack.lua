-- Remove finished jobs, each if the caller still holds it.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] reserved  KEYS[4] claims
-- ARGV pairs of id, reservation token
-- Returns how many were removed (a stale reservation, handed to another, is skipped).
local removed = 0
for i = 1, #ARGV, 2 do
  local id, held_by = ARGV[i], ARGV[i + 1]
  local st = redis.call('HGET', KEYS[2], id)
  if st and string.match(st, '|([^|]*)$') == held_by then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    if not string.find(held_by, '.', 1, true) then redis.call('HDEL', KEYS[4], held_by) end
    removed = removed + 1
  end
end
return removed
