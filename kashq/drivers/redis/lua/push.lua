-- Store jobs of one queue: ready now, or delayed until their time.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed
-- KEYS[5] reserved  KEYS[6] seq  KEYS[7] wake
-- ARGV[1] now; then for each job 4 values: id, raw envelope, priority, available_at
-- Returns the number of jobs stored. A job id that is already queued is replaced.
local now = tonumber(ARGV[1])
local woken = 0
for i = 2, #ARGV, 4 do
  local id, raw = ARGV[i], ARGV[i + 1]
  local priority, available_at = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local old = redis.call('HGET', KEYS[2], id)
  if old then
    local old_seq = tonumber(string.match(old, '^[^|]*|([^|]*)|'))
    redis.call('ZREM', KEYS[3], string.format('%015d|%s', old_seq, id))
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
  end
  local seq = redis.call('INCR', KEYS[6])
  redis.call('HSET', KEYS[1], id, raw)
  redis.call('HSET', KEYS[2], id, priority .. '|' .. seq .. '|0|')
  if available_at > now then
    redis.call('ZADD', KEYS[4], available_at, id)
  else
    redis.call('ZADD', KEYS[3], -priority, string.format('%015d|%s', seq, id))
    woken = woken + 1
  end
end
if woken > 0 then
  for _ = 1, math.min(woken, 64) do
    redis.call('LPUSH', KEYS[7], 1)
  end
  redis.call('LTRIM', KEYS[7], 0, 63)
end
return (#ARGV - 1) / 4
