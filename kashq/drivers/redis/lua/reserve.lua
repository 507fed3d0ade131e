-- Hand out up to `limit` jobs of one queue, after promoting due delayed jobs and
-- reclaiming lapsed leases (so reclaiming is atomic and never races).
-- First, acknowledge finished jobs of the same queue (saving the worker a round
-- trip per job).
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved  KEYS[6] claims
-- ARGV[1] now  ARGV[2] lease seconds  ARGV[3] reservation token (chosen by the caller)
-- ARGV[4] limit (1 or more)  [ARGV[5], ARGV[6] ... pairs of id, token to ack]
-- Returns {id, raw, deliveries, token, id, raw, ...} or {false, next_due} where
-- next_due is the earliest time a delayed job or a lease falls due (or -1 if none).
--
-- The first job is held under `token`, the n-th one prefetched after it under
-- `token.n`. A prefetched job may never have started when its worker died, so
-- when its lease lapses its delivery is not counted; it comes back marked solo
-- (holder '!') and is handed out alone, counted, the next time: a job that
-- kills its worker still reaches "worker lost", and one that merely waited
-- behind it never does.
-- Repeating a call with the same token (a retry after a lost reply) returns the
-- first job that token already holds instead of taking new ones.
local now, lease, token, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])

local function parse(st)
  local priority, seq, deliveries, holder = string.match(st, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return priority, seq, tonumber(deliveries), holder
end

local CHUNK = 1000 -- ids per command: far below Lua's limit on unpacked arguments

local function call_chunked(command, key, args)
  for s = 1, #args, 2 * CHUNK do
    redis.call(command, key, unpack(args, s, math.min(s + 2 * CHUNK - 1, #args)))
  end
end

-- Acknowledge: remove each (id, token) pair still held by that token, a few
-- commands per thousand jobs (as lua/ack.lua does).
for s = 5, #ARGV, 2 * CHUNK do
  local ids, holders = {}, {}
  for i = s, math.min(s + 2 * CHUNK - 1, #ARGV), 2 do
    ids[#ids + 1], holders[#holders + 1] = ARGV[i], ARGV[i + 1]
  end
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  local done, claims = {}, {}
  for k = 1, #ids do
    local st, held_by = states[k], holders[k]
    if st and select(4, parse(st)) == held_by then
      done[#done + 1] = ids[k]
      if not string.find(held_by, '.', 1, true) then claims[#claims + 1] = held_by end
    end
  end
  if #done > 0 then
    redis.call('HDEL', KEYS[1], unpack(done))
    redis.call('HDEL', KEYS[2], unpack(done))
    redis.call('ZREM', KEYS[5], unpack(done))
    if #claims > 0 then redis.call('HDEL', KEYS[6], unpack(claims)) end
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
  local mark = ''
  if string.find(holder, '.', 1, true) then  -- prefetched: it may never have started
    deliveries, mark = math.max(deliveries - 1, 0), '!'
  elseif holder ~= '' and holder ~= '!' then
    redis.call('HDEL', KEYS[6], holder)
  end
  redis.call('HSET', KEYS[2], id, priority .. '|' .. seq .. '|' .. deliveries .. '|' .. mark)
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

-- Take jobs off the ready set a batch at a time (one ZPOPMIN, one HMGET of
-- states, one of bodies); popped entries not taken go back as they were.
local out, states, leases = {}, {}, {}
local taken, solo = 0, false
while taken < limit and not solo do
  local popped = redis.call('ZPOPMIN', KEYS[3], math.min(limit - taken, CHUNK))
  if #popped == 0 then break end
  local ids = {}
  for p = 1, #popped, 2 do ids[#ids + 1] = string.sub(popped[p], 17) end
  local sts = redis.call('HMGET', KEYS[2], unpack(ids))
  local raws = redis.call('HMGET', KEYS[1], unpack(ids))
  for k = 1, #ids do
    local entry, id, st, raw = popped[2 * k - 1], ids[k], sts[k], raws[k]
    if solo then  -- a solo job ended the batch: the rest go back
      redis.call('ZADD', KEYS[3], popped[2 * k], entry)
    else
      local entry_seq = string.sub(entry, 1, 15)
      local priority, seq, deliveries, holder = '0', entry_seq, 0, ''
      if st then priority, seq, deliveries, holder = parse(st) end
      -- An entry is current only if it names the job's seq and the job is waiting;
      -- anything else is stale (replaced, or already reserved) and is dropped.
      if (st or raw) and (holder == '' or holder == '!') and tonumber(seq) == tonumber(entry_seq) then
        if holder == '!' and taken > 0 then  -- back from a dead worker's prefetch: alone, next time
          redis.call('ZADD', KEYS[3], popped[2 * k], entry)
          solo = true
        else
          local mine = token
          if taken > 0 then mine = token .. '.' .. taken end
          deliveries = deliveries + 1
          taken = taken + 1
          states[#states + 1] = id
          states[#states + 1] = priority .. '|' .. seq .. '|' .. deliveries .. '|' .. mine
          leases[#leases + 1] = now + lease
          leases[#leases + 1] = id
          out[#out + 1] = id
          out[#out + 1] = raw or ''
          out[#out + 1] = deliveries
          out[#out + 1] = mine
          if holder == '!' then solo = true end
        end
      end
    end
  end
end
if taken > 0 then
  call_chunked('HSET', KEYS[2], states)
  call_chunked('ZADD', KEYS[5], leases)
  redis.call('HSET', KEYS[6], token, out[1])
  return out
end

local next_due = -1
local first_delayed = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if #first_delayed > 0 then next_due = tonumber(first_delayed[2]) end
local first_lease = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if #first_lease > 0 and (next_due < 0 or tonumber(first_lease[2]) < next_due) then
  next_due = tonumber(first_lease[2])
end
return {false, tostring(next_due)}
