-- Put a reserved job back with a new envelope: ready now or delayed until available_at.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved
-- KEYS[6] seq  KEYS[7] wake  KEYS[8] claims
-- [KEYS[9] tags  KEYS[10...] tag indexes: only when the job has tags, before or after]
-- ARGV[1] id  ARGV[2] token  ARGV[3] raw envelope  ARGV[4] priority
-- ARGV[5] available_at  ARGV[6] now
-- [ARGV[7] how many of KEYS[10...] are the new envelope's tags' indexes, where the job
-- takes its new seq; it leaves the others (the old envelope's tags only)]
-- Returns 1 if released, 0 if the reservation was stale.
local id = ARGV[1]
local st = redis.call('HGET', KEYS[2], id)
if not st or string.match(st, '|([^|]*)$') ~= ARGV[2] then return 0 end
local priority, available_at = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREM', KEYS[5], id)
redis.call('HDEL', KEYS[8], ARGV[2])
local seq = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[1], id, ARGV[3])
redis.call('HSET', KEYS[2], id, priority .. '|' .. seq .. '|0|')
if available_at > tonumber(ARGV[6]) then
  redis.call('ZADD', KEYS[4], available_at, id)
else
  redis.call('ZADD', KEYS[3], -priority, string.format('%015d|%s', seq, id))
  redis.call('LPUSH', KEYS[7], 1)
  redis.call('LTRIM', KEYS[7], 0, 63)
end
for k = 10, #KEYS do
  if k < 10 + tonumber(ARGV[7]) then
    redis.call('ZADD', KEYS[k], seq, id)
    redis.call('SADD', KEYS[9], KEYS[k])
  else
    redis.call('ZREM', KEYS[k], id)
    if redis.call('EXISTS', KEYS[k]) == 0 then redis.call('SREM', KEYS[9], KEYS[k]) end
  end
end
return 1
