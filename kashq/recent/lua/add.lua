-- List jobs that ended one way on one queue, then trim the list to both bounds: all at once.
-- KEYS[1] the list's ids (ZSET <prefix>:{<queue>}:recent:<outcome>: score finished_at, member job id)
-- KEYS[2] the list's records (HASH <prefix>:{<queue>}:recent:<outcome>:records: job id -> JSON)
-- ARGV[1] cutoff: records finished at or before it go (Unix seconds)
-- ARGV[2] the most records kept (the newest)
-- ARGV[3] time to live of both keys after this write, ms
-- ARGV[4] the records, NUL-separated: finished_at, job id, record JSON, finished_at, ...
--         (one argument for the batch: neither a job id nor JSON text holds a NUL);
--         '' lists nothing and only trims, as prune does
-- Returns how many records the trim removed.
local ids, records = KEYS[1], KEYS[2]
local scored, fields = {}, {}
local blob, at = ARGV[4], 1
while at <= #blob do
  local id_at = string.find(blob, '\0', at, true) + 1
  local record_at = string.find(blob, '\0', id_at, true) + 1
  local after = (string.find(blob, '\0', record_at, true) or #blob + 1) + 1
  local id = string.sub(blob, id_at, record_at - 2)
  scored[#scored + 1] = string.sub(blob, at, id_at - 2)
  scored[#scored + 1] = id
  fields[#fields + 1] = id
  fields[#fields + 1] = string.sub(blob, record_at, after - 2)
  at = after
end
if #scored > 0 then
  -- A job already listed moves to its new time, its record replaced.
  redis.call('ZADD', ids, unpack(scored))
  redis.call('HSET', records, unpack(fields))
end

local function forget(members)
  for i = 1, #members, 1000 do
    redis.call('HDEL', records, unpack(members, i, math.min(i + 999, #members)))
  end
  return #members
end

local gone = forget(redis.call('ZRANGEBYSCORE', ids, '-inf', ARGV[1]))
redis.call('ZREMRANGEBYSCORE', ids, '-inf', ARGV[1])
local over = redis.call('ZCARD', ids) - tonumber(ARGV[2])
if over > 0 then
  gone = gone + forget(redis.call('ZRANGE', ids, 0, over - 1))
  redis.call('ZREMRANGEBYRANK', ids, 0, over - 1)
end
-- A list nobody writes to any more outlives its newest record by little.
if #scored > 0 then
  redis.call('PEXPIRE', ids, ARGV[3])
  redis.call('PEXPIRE', records, ARGV[3])
end
return gone
