-- Store a job's outcome, keep the record for its TTL, and wake its waiters: all at once.
-- KEYS[1] the job's result hash (<prefix>:result:{<id>})
-- KEYS[2] the job's done stream (<prefix>:result:{<id>}:done, same hash tag)
-- ARGV[1] time to live, ms   ARGV[2] the outcome's status
-- ARGV[3..] field, value pairs of the outcome (never a progress field, so progress is kept)
-- Returns 1.
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
-- One entry is all a waiter needs (XREAD from 0-0); a second outcome replaces it.
redis.call('XADD', KEYS[2], 'MAXLEN', '1', '*', 'status', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
