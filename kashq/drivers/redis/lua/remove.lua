-- Take one waiting job of one queue out for good; a reserved one is left to its worker.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved
-- ARGV[1] id  ARGV[2] now
-- Returns what lua/find.lua would have returned just before: {} if the queue holds no
-- such job, else {state, raw, deliveries, lease_until}. A waiting job ('ready' or
-- 'delayed', judged by time) is removed from every key that holds it; a 'reserved' one,
-- its lease lapsed or not, is left as it is. No claim names a waiting job (reserve,
-- release and unreserve drop the claim of the token that held it), so claims are not
-- touched. One script, so it never interleaves with a reserve: the job is removed or
-- reported reserved, never both.
local id, now = ARGV[1], tonumber(ARGV[2])
local st = redis.call('HGET', KEYS[2], id)
if not st then return {} end
local seq, deliveries, holder = string.match(st, '^[^|]*|([^|]*)|([^|]*)|(.*)$')
local raw = redis.call('HGET', KEYS[1], id) or ''
if holder ~= '' and holder ~= '!' then  -- '!': waiting (see reserve.lua)
  return {'reserved', raw, deliveries, redis.call('ZSCORE', KEYS[5], id) or ''}
end
local state = 'ready'
local due = redis.call('ZSCORE', KEYS[4], id)
if due and tonumber(due) > now then state = 'delayed' end
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('ZREM', KEYS[3], string.format('%015d|%s', tonumber(seq), id))
redis.call('ZREM', KEYS[4], id)
return {state, raw, deliveries, ''}
