-- Hand out the next job of one queue, after promoting due delayed jobs and
-- reclaiming lapsed leases (so reclaiming is atomic and never races).
-- First, optionally, acknowledge a finished job of the same queue (saving the
-- worker a round trip per job).
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved  KEYS[6] claims
-- ARGV[1] now  ARGV[2] lease seconds  ARGV[3] reservation token (chosen by the caller)
-- [ARGV[4] id to ack  ARGV[5] its token]
-- Returns {id, raw, deliveries, token} or {false, next_due} where next_due is the
-- earliest time a delayed job or a lease falls due (or -1 if none).
-- Repeating a call with the same token (a retry after a lost reply) returns the
-- job that token already holds instead of taking a second one.
local now, lease, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local function parse(st)
  local priority, seq, deliveries, holder = string.match(st, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return priority, seq, tonumber(deliveries), holder
end

if ARGV[4] then
  local st = redis.call('HGET', KEYS[2], ARGV[4])
  if st and select(4, parse(st)) == ARGV[5] then
    redis.call('HDEL', KEYS[1], ARGV[4])
    redis.call('HDEL', KEYS[2], ARGV[4])
    redis.call('ZREM', KEYS[5], ARGV[4])
    redis.call('HDEL', KEYS[6], ARGV[5])
  end
end

local held = redis.call('HGET', KEYS[6], token)
if held then
  local st = redis.call('HGET', KEYS[2], held)
  if st and select(4, parse(st)) == token then
    return {held, redis.call('HGET', KEYS[1], held) or '', select(3, parse(st)), token}
  end
end

local function requeue(id)
  local st = redis.call('HGET', KEYS[2], id)
  if not st then return end
  local priority, seq, deliveries, holder = parse(st)
  if holder ~= '' then redis.call('HDEL', KEYS[6], holder) end
  redis.call('HSET', KEYS[2], id, priority .. '|' .. seq .. '|' .. deliveries .. '|')
  redis.call('ZADD', KEYS[3], -tonumber(priority), string.format('%015d|%s', tonumber(seq), id))
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[4], id)
  requeue(id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[5], id)
  requeue(id)
end

while true do
  local popped = redis.call('ZPOPMIN', KEYS[3])
  if #popped == 0 then break end
  local entry_seq, id = string.sub(popped[1], 1, 15), string.sub(popped[1], 17)
  local st = redis.call('HGET', KEYS[2], id)
  local raw = redis.call('HGET', KEYS[1], id)
  local priority, seq, deliveries, holder = '0', entry_seq, 0, ''
  if st then priority, seq, deliveries, holder = parse(st) end
  -- An entry is current only if it names the job's seq and the job is waiting;
  -- anything else is stale (replaced, or already reserved) and is dropped.
  if (st or raw) and holder == '' and tonumber(seq) == tonumber(entry_seq) then
    deliveries = deliveries + 1
    redis.call('HSET', KEYS[2], id, priority .. '|' .. seq .. '|' .. deliveries .. '|' .. token)
    redis.call('ZADD', KEYS[5], now + lease, id)
    redis.call('HSET', KEYS[6], token, id)
    return {id, raw or '', deliveries, token}
  end
end

local next_due = -1
local first_delayed = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if #first_delayed > 0 then next_due = tonumber(first_delayed[2]) end
local first_lease = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if #first_lease > 0 and (next_due < 0 or tonumber(first_lease[2]) < next_due) then
  next_due = tonumber(first_lease[2])
end
return {false, tostring(next_due)}
