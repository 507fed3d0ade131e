-- One page of a queue's jobs in one state, in that state's order, after a cursor.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved
-- ARGV[1] 'ready', 'delayed' or 'reserved'  ARGV[2] now  ARGV[3] limit
-- ARGV[4] ARGV[5] the cursor: score and member of the last entry listed ('' '': the start)
-- Returns {more, id, raw, deliveries, score, member, ...}: up to `limit` jobs, each with
-- its entry in the state's set (ready: score -priority, member '<seq>|<id>'; delayed:
-- available_at, id; reserved: lease deadline, id), and more = 1 if a job follows them.
-- 'ready' first moves the delayed jobs that fell due to the ready set, as a reserve
-- would (find calls them ready already), up to 1000: with more, it returns {'again'}
-- having listed nothing, and the caller calls again. Otherwise nothing is written.
-- A page costs O(limit + log n): the cursor's entry is found by rank, or, when it has
-- left, by bisecting the entries of its score.
local state, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local PROMOTE, CHUNK = 1000, 100

local function parse(st)
  local seq, deliveries, holder = string.match(st, '^[^|]*|([^|]*)|([^|]*)|(.*)$')
  return tonumber(seq), deliveries, holder ~= '' and holder ~= '!'
end

-- Bytewise a < b: how a sorted set orders the members of one score.
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The rank of the first entry of `key` after (score, member) in the set's order.
local function rank_after(key, score, member)
  if score == '' then return 0 end
  local held = redis.call('ZSCORE', key, member)
  if held and tonumber(held) == tonumber(score) then
    return redis.call('ZRANK', key, member) + 1
  end
  local lo = redis.call('ZCOUNT', key, '-inf', '(' .. score)
  local hi = redis.call('ZCOUNT', key, '-inf', score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if before(member, redis.call('ZRANGE', key, mid, mid)[1]) then hi = mid else lo = mid + 1 end
  end
  return lo
end

local key = KEYS[5]
if state == 'ready' then
  key = KEYS[3]
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, PROMOTE)
  for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[4], id)
    local st = redis.call('HGET', KEYS[2], id)
    if st then
      local priority, seq = string.match(st, '^([^|]*)|([^|]*)|')
      redis.call('ZADD', KEYS[3], -tonumber(priority), string.format('%015d|%s', tonumber(seq), id))
    end
  end
  if #due == PROMOTE then return {'again'} end
elseif state == 'delayed' then
  key = KEYS[4]
end

local rank = rank_after(key, ARGV[4], ARGV[5])
if state == 'delayed' then rank = math.max(rank, redis.call('ZCOUNT', KEYS[4], '-inf', now)) end
local out, listed = {0}, 0
while true do
  local entries = redis.call('ZRANGE', key, rank, rank + CHUNK - 1, 'WITHSCORES')
  if #entries == 0 then return out end
  local ids = {}
  for e = 1, #entries, 2 do
    ids[#ids + 1] = state == 'ready' and string.sub(entries[e], 17) or entries[e]
  end
  local sts = redis.call('HMGET', KEYS[2], unpack(ids))
  local raws = redis.call('HMGET', KEYS[1], unpack(ids))
  for k = 1, #ids do
    local member, st = entries[2 * k - 1], sts[k]
    if st then
      local seq, deliveries, held = parse(st)
      -- An entry is current if the job is in that state (ready: at that seq).
      local current = held == (state == 'reserved')
      if state == 'ready' then current = current and seq == tonumber(string.sub(member, 1, 15)) end
      if current then
        if listed == limit then
          out[1] = 1
          return out
        end
        listed = listed + 1
        for _, value in ipairs({ids[k], raws[k] or '', deliveries, entries[2 * k], member}) do
          out[#out + 1] = value
        end
      end
    end
  end
  rank = rank + #ids
end
