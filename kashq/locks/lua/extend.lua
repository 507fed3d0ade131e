-- Make a lock last a new TTL from now, if the caller still holds it (compare-and-pexpire).
-- KEYS[1] lock key
-- ARGV[1] holder's token  ARGV[2] new TTL in milliseconds
-- Returns 1 if extended, 0 if the lock had expired or belongs to another token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
