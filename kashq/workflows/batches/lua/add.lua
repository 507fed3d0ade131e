-- Count more jobs in a batch, before they are pushed.
-- KEYS[1] the batch's record  KEYS[2] its jobs  KEYS[3] its order list
-- ARGV: the new jobs' ids. Returns the record's fields (a flat HGETALL); or an error
-- reply when the batch is unknown or has finished. An id already counted is skipped.
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('unknown') end
if redis.call('HGET', KEYS[1], 'finished_at') ~= '' then return redis.error_reply('finished') end
local added = 0
for _, id in ipairs(ARGV) do
  if redis.call('HSETNX', KEYS[2], id, '') == 1 then
    redis.call('RPUSH', KEYS[3], id)
    added = added + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'total', added)
return redis.call('HGETALL', KEYS[1])
