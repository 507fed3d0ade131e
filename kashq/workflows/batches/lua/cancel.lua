-- Mark a batch cancelled unless it is cancelled already or finished.
-- KEYS[1] the batch's record  ARGV[1] now. Returns its fields (a flat HGETALL), or
-- an empty list for an unknown batch.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if redis.call('HGET', KEYS[1], 'cancelled_at') == '' and
   redis.call('HGET', KEYS[1], 'finished_at') == '' then
  redis.call('HSET', KEYS[1], 'cancelled_at', ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
