-- Free a lock, if the caller still holds it (compare-and-delete).
-- KEYS[1] lock key
-- ARGV[1] holder's token
-- Returns 1 if freed, 0 if the lock had expired or belongs to another token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
