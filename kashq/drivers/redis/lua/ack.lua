-- Remove a finished job, if the caller still holds it.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] reserved  KEYS[4] claims
-- ARGV[1] id  ARGV[2] reservation token
-- Returns 1 if removed, 0 if the reservation was stale (the job was handed to another).
local st = redis.call('HGET', KEYS[2], ARGV[1])
if not st or string.match(st, '|([^|]*)$') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[2])
return 1
