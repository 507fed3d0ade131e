-- Look up one job of one queue as it stands now, changing nothing.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] delayed  KEYS[4] reserved
-- ARGV[1] id  ARGV[2] now
-- Returns {} if the queue holds no such job, else {state, raw, deliveries, lease_until}:
-- state is 'ready', 'delayed' or 'reserved', judged by time (a delayed job whose time
-- has come is ready before a reserve moves it); lease_until is a reserved job's lease
-- deadline as stored (past, if its lease lapsed and no reserve reclaimed it yet),
-- '' for a waiting one.
local id, now = ARGV[1], tonumber(ARGV[2])
local st = redis.call('HGET', KEYS[2], id)
if not st then return {} end
local deliveries, holder = string.match(st, '^[^|]*|[^|]*|([^|]*)|(.*)$')
local raw = redis.call('HGET', KEYS[1], id) or ''
if holder ~= '' and holder ~= '!' then  -- '!': waiting (see reserve.lua)
  return {'reserved', raw, deliveries, redis.call('ZSCORE', KEYS[4], id) or ''}
end
local due = redis.call('ZSCORE', KEYS[3], id)
if due and tonumber(due) > now then return {'delayed', raw, deliveries, ''} end
return {'ready', raw, deliveries, ''}
