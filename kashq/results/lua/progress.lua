-- Store a job's latest progress, unless a newer report is stored; never touches the outcome.
-- KEYS[1] the job's result hash (<prefix>:result:{<id>})
-- ARGV[1] fraction done   ARGV[2] message   ARGV[3] when it was reported (Unix seconds)
-- ARGV[4] time to live, ms   ARGV[5] when that is (Unix seconds, the record's expires_at)
-- Returns 1 if stored, 0 if a newer report was there.
local stored = redis.call('HGET', KEYS[1], 'progress_at')
if stored and stored ~= '' and tonumber(stored) > tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'message', ARGV[2], 'progress_at', ARGV[3])
-- Progress may make a record live longer, never shorter, and an outcome keeps its own
-- TTL. PTTL is -1 on a new record (no TTL yet).
local status = redis.call('HGET', KEYS[1], 'status')
if (not status or status == '') and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[5])
end
return 1
