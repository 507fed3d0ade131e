-- Renew the lease of a job the caller still holds.
-- KEYS[1] state  KEYS[2] reserved
-- ARGV[1] id  ARGV[2] token  ARGV[3] new lease deadline
-- Returns 1 if renewed, 0 if the reservation was stale.
local st = redis.call('HGET', KEYS[1], ARGV[1])
if not st or string.match(st, '|([^|]*)$') ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
