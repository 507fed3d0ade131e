-- Store jobs of one queue: ready now, or delayed until their time.
-- Work is batched (one HMGET/HSET/ZADD per chunk, not per job) so a bulk push
-- of thousands of jobs costs a handful of commands; a single new job (one
-- dispatch()) takes a shorter path of five commands.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] seq  KEYS[6] wake
-- [KEYS[7] tags  KEYS[8...] tag indexes: only when some of the jobs have tags]
-- ARGV[1] now; then for each job 4 values: id, raw envelope, priority, available_at;
-- [with tag indexes, last: which job has which tags, "j:k,k;j:k" (job number, KEYS index)]
-- Returns the number of jobs stored. A job id that is already waiting (ready or
-- delayed) is replaced; one that is reserved is left to its worker and the new
-- copy dropped, so repeating a push (a retry after a lost reply) is harmless.
local CHUNK = 7000 -- even, and below Lua's limit on unpacked arguments
local WAKE_MAX = 64 -- wake-up tokens kept: more than any host runs idle workers

local function call_chunked(command, key, args)
  for s = 1, #args, CHUNK do
    redis.call(command, key, unpack(args, s, math.min(s + CHUNK - 1, #args)))
  end
end

-- Leave one wake-up token per ready job (up to WAKE_MAX) for idle workers.
local function wake(count)
  local tokens = {}
  for k = 1, math.min(count, WAKE_MAX) do tokens[k] = 1 end
  if redis.call('LPUSH', KEYS[6], unpack(tokens)) > WAKE_MAX then
    redis.call('LTRIM', KEYS[6], 0, WAKE_MAX - 1)
  end
end

local now = tonumber(ARGV[1])
local tagged = #KEYS > 6
local count = (#ARGV - (tagged and 2 or 1)) / 4
local placed = {} -- job number -> seq, for the tag indexes

-- Each tag's index (a ZSET) scores its jobs by seq: their place in the queue's order.
local function index_tags()
  for j, ks in string.gmatch(ARGV[#ARGV], '(%d+):([%d,]+)') do
    local seq, id = placed[tonumber(j)], ARGV[4 * tonumber(j) - 2]
    if seq then
      for k in string.gmatch(ks, '%d+') do
        redis.call('ZADD', KEYS[tonumber(k)], seq, id)
        redis.call('SADD', KEYS[7], KEYS[tonumber(k)])
      end
    end
  end
end

-- One job whose id is new: HSETNX claims its state, so no read comes first.
-- An id already stored goes the general way (its seq then skips a number: harmless).
if count == 1 then
  local id, priority, available_at = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
  local seq = redis.call('INCR', KEYS[5])
  if redis.call('HSETNX', KEYS[2], id, priority .. '|' .. seq .. '|0|') == 1 then
    redis.call('HSET', KEYS[1], id, ARGV[3])
    if available_at > now then
      redis.call('ZADD', KEYS[4], available_at, id)
    else
      redis.call('ZADD', KEYS[3], -priority, string.format('%015d|%s', seq, id))
      wake(1)
    end
    if tagged then
      placed[1] = seq
      index_tags()
    end
    return 1
  end
end

local ids = {}
for j = 1, count do ids[j] = ARGV[4 * j - 2] end

-- A job already waiting is replaced: drop its old ready/delayed entries first.
-- A reserved one (it has a token) is skipped.
local skip = {}
for s = 1, count, CHUNK do
  local old = redis.call('HMGET', KEYS[2], unpack(ids, s, math.min(s + CHUNK - 1, count)))
  for k, st in ipairs(old) do
    if st then
      local id = ids[s + k - 1]
      local old_seq, token = string.match(st, '^[^|]*|([^|]*)|[^|]*|(.*)$')
      if token ~= '' and token ~= '!' then  -- '!': waiting (see reserve.lua)
        skip[s + k - 1] = true
      else
        redis.call('ZREM', KEYS[3], string.format('%015d|%s', tonumber(old_seq), id))
        redis.call('ZREM', KEYS[4], id)
      end
    end
  end
end

local seq = redis.call('INCRBY', KEYS[5], count) - count
local bodies, states, ready, delayed = {}, {}, {}, {}
for j = 1, count do
  local i = 4 * j - 2
  local id, priority, available_at = ARGV[i], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  seq = seq + 1
  if not skip[j] then
    if tagged then placed[j] = seq end
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = ARGV[i + 1]
    states[#states + 1] = id
    states[#states + 1] = priority .. '|' .. seq .. '|0|'
    if available_at > now then
      delayed[#delayed + 1] = available_at
      delayed[#delayed + 1] = id
    else
      ready[#ready + 1] = -priority
      ready[#ready + 1] = string.format('%015d|%s', seq, id)
    end
  end
end
if #bodies > 0 then
  call_chunked('HSET', KEYS[1], bodies)
  call_chunked('HSET', KEYS[2], states)
end
if #ready > 0 then call_chunked('ZADD', KEYS[3], ready) end
if #delayed > 0 then call_chunked('ZADD', KEYS[4], delayed) end
if #ready > 0 then wake(#ready / 2) end
if tagged then index_tags() end
return count
