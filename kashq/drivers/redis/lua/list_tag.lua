-- One page of the jobs of one tag in one state, in the tag index's order, after a cursor.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] delayed  KEYS[4] reserved  KEYS[5] tags
-- KEYS[6] the tag's index (score: the job's seq when it was pushed or released)
-- ARGV[1] 'ready', 'delayed' or 'reserved'  ARGV[2] now  ARGV[3] limit
-- ARGV[4] the cursor: the seq to go on after ('' from the start)
-- ARGV[5] the most entries to walk
-- Returns {next, id, raw, deliveries, lease_until, ...}: up to `limit` jobs in that state
-- (judged by time, as lua/find.lua judges it; lease_until '' unless reserved), and where
-- to go on: '' when the index ends, else the seq of the last job listed or, when ARGV[5]
-- entries were walked first, of the last entry walked.
-- An entry whose job left or was pushed again (its seq is not the job's) is stale: it is
-- deleted in passing, so the index shrinks back when it is read.
local state, now, limit, walk = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local CHUNK = math.min(limit + 1, 100)
local low = ARGV[4] == '' and '-inf' or '(' .. ARGV[4]
local out, listed, last, walked, stale = {''}, 0, '', 0, {}

local function done(next)
  if #stale > 0 then
    redis.call('ZREM', KEYS[6], unpack(stale))
    if redis.call('EXISTS', KEYS[6]) == 0 then redis.call('SREM', KEYS[5], KEYS[6]) end
  end
  out[1] = next
  return out
end

-- The state lua/find.lua reports, or nil for a stale entry.
local function state_of(id, placed)
  local st = redis.call('HGET', KEYS[2], id)
  if not st then return nil end
  local seq, deliveries, holder = string.match(st, '^[^|]*|([^|]*)|([^|]*)|(.*)$')
  if tonumber(seq) ~= tonumber(placed) then return nil end
  if holder ~= '' and holder ~= '!' then
    return 'reserved', deliveries, redis.call('ZSCORE', KEYS[4], id) or ''
  end
  local due = redis.call('ZSCORE', KEYS[3], id)
  if due and tonumber(due) > now then return 'delayed', deliveries, '' end
  return 'ready', deliveries, ''
end

while true do
  local entries = redis.call('ZRANGEBYSCORE', KEYS[6], low, '+inf', 'WITHSCORES', 'LIMIT', 0, CHUNK)
  if #entries == 0 then return done('') end
  for e = 1, #entries, 2 do
    local id, placed = entries[e], entries[e + 1]
    local is, deliveries, lease_until = state_of(id, placed)
    if is == nil then
      stale[#stale + 1] = id
    elseif is == state then
      if listed == limit then return done(last) end
      listed, last = listed + 1, placed
      for _, value in ipairs({id, redis.call('HGET', KEYS[1], id) or '', deliveries, lease_until}) do
        out[#out + 1] = value
      end
    end
    walked, low = walked + 1, '(' .. placed
    if walked >= walk then return done(placed) end
  end
end
