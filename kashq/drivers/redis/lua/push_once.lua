-- The prelude of push_once (joined before push.lua into one script): store one
-- job unless its id was stored this way before its memory lapsed.
-- KEYS: push.lua's, then the queue's once ZSET (member job id, score when it is
-- forgotten); ARGV: push.lua's for one job, then that score. Both extras are
-- taken off the end, so push.lua below sees exactly its own arguments.
-- Returns 0 when the id is remembered (nothing stored), else push.lua's 1.
local once_key = table.remove(KEYS)
local forget_at = table.remove(ARGV)
local remembered = redis.call('ZSCORE', once_key, ARGV[2])
if remembered and tonumber(remembered) > tonumber(ARGV[1]) then
  return 0
end
redis.call('ZREMRANGEBYSCORE', once_key, '-inf', ARGV[1])
redis.call('ZADD', once_key, forget_at, ARGV[2])
