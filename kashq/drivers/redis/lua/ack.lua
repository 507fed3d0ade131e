-- Remove finished jobs, each if the caller still holds it: a few commands per
-- thousand jobs (one HMGET of states, then one HDEL/ZREM per key).
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] reserved  KEYS[4] claims
-- ARGV pairs of id, reservation token
-- Returns how many were removed (a stale reservation, handed to another, is skipped).
local CHUNK = 1000
local removed = 0
for s = 1, #ARGV, 2 * CHUNK do
  local ids, holders = {}, {}
  for i = s, math.min(s + 2 * CHUNK - 1, #ARGV), 2 do
    ids[#ids + 1], holders[#holders + 1] = ARGV[i], ARGV[i + 1]
  end
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  local done, claims, seen = {}, {}, {}
  for k = 1, #ids do
    local st, held_by = states[k], holders[k]
    if st and not seen[ids[k]] and string.match(st, '|([^|]*)$') == held_by then
      seen[ids[k]] = true  -- an id listed twice is removed (and counted) once
      done[#done + 1] = ids[k]
      if not string.find(held_by, '.', 1, true) then claims[#claims + 1] = held_by end
    end
  end
  if #done > 0 then
    redis.call('HDEL', KEYS[1], unpack(done))
    redis.call('HDEL', KEYS[2], unpack(done))
    redis.call('ZREM', KEYS[3], unpack(done))
    if #claims > 0 then redis.call('HDEL', KEYS[4], unpack(claims)) end
    removed = removed + #done
  end
end
return removed
