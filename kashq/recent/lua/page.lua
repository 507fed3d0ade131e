-- One page of a list of recent jobs, newest first, after the record a cursor names.
-- KEYS[1] the list's ids (ZSET <prefix>:{<queue>}:recent:<outcome>: score finished_at, member job id)
-- KEYS[2] the list's records (HASH <prefix>:{<queue>}:recent:<outcome>:records: job id -> JSON)
-- ARGV[1] cutoff: records finished at or before it are not shown (Unix seconds)
-- ARGV[2] the most records to return
-- ARGV[3] the cursor's finished_at, or '' for the first page
-- ARGV[4] the cursor's job id
-- Returns a flat list, newest first: job id, finished_at, record JSON, ...
local ids, cutoff, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local at, after = ARGV[3], ARGV[4]

-- Whether a sorts before b byte by byte, as a sorted set orders members of one score
-- (Lua's own < follows the server's locale).
local function below(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local found
if at == '' then
  found = redis.call('ZREVRANGEBYSCORE', ids, '+inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
else
  local held = redis.call('ZSCORE', ids, after)
  if held and tonumber(held) == tonumber(at) then
    -- The cursor's record is still there: read on from its rank.
    local rank = redis.call('ZREVRANK', ids, after)
    found = redis.call('ZREVRANGE', ids, rank + 1, rank + limit, 'WITHSCORES')
  else
    -- It went (trimmed, or listed again at another time): the records of its time
    -- that sort below it, then the older ones.
    found = {}
    local same = redis.call('ZREVRANGEBYSCORE', ids, at, at, 'WITHSCORES')
    for i = 1, #same, 2 do
      if #found < 2 * limit and below(same[i], after) then
        found[#found + 1] = same[i]
        found[#found + 1] = same[i + 1]
      end
    end
    local left = limit - #found / 2
    if left > 0 then
      local older = redis.call('ZREVRANGEBYSCORE', ids, '(' .. at, '-inf', 'WITHSCORES', 'LIMIT', 0, left)
      for i = 1, #older do
        found[#found + 1] = older[i]
      end
    end
  end
end

local page = {}
for i = 1, #found, 2 do
  if tonumber(found[i + 1]) <= cutoff then
    break
  end
  local record = redis.call('HGET', KEYS[2], found[i])
  if record then
    page[#page + 1] = found[i]
    page[#page + 1] = found[i + 1]
    page[#page + 1] = record
  end
end
return page
