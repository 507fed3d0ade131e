-- Note the queues a batch listed jobs of, and forget those whose newest record is past its age.
-- KEYS[1] the queues holding recent jobs (ZSET <prefix>:recent:{queues}: score the newest
--         finished_at listed, member queue name)
-- ARGV[1] cutoff: a queue whose newest record finished at or before it holds none (Unix seconds)
-- ARGV[2] time to live of the key after this write, ms
-- ARGV[3..] pairs: the newest finished_at of the batch on that queue, queue name
-- Returns how many queues were forgotten.
for i = 3, #ARGV, 2 do
  local held = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
  if not held or tonumber(held) < tonumber(ARGV[i]) then
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local gone = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #ARGV > 2 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return gone
