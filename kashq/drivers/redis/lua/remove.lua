-- Take one waiting job of one queue out for good; a reserved one is left to its worker.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved
-- [KEYS[6] tags  KEYS[7...] the indexes of the tags ARGV[3...]]
-- ARGV[1] id  ARGV[2] now  [ARGV[3...] the job's tags, as the caller believes]
-- Returns what lua/find.lua would have returned just before: {} if the queue holds no
-- such job, else {state, raw, deliveries, lease_until}. A waiting job ('ready' or
-- 'delayed', judged by time) is removed from every key that holds it; a 'reserved' one,
-- its lease lapsed or not, is left as it is. No claim names a waiting job (reserve,
-- release and unreserve drop the claim of the token that held it), so claims are not
-- touched. One script, so it never interleaves with a reserve: the job is removed or
-- reported reserved, never both.
-- A waiting job whose envelope has a tag not among ARGV[3...] is left as it is and
-- {'tags', tag, ...} (all its tags) returned: the caller asks again with their indexes.
local id, now = ARGV[1], tonumber(ARGV[2])
local st = redis.call('HGET', KEYS[2], id)
if not st then return {} end
local seq, deliveries, holder = string.match(st, '^[^|]*|([^|]*)|([^|]*)|(.*)$')
local raw = redis.call('HGET', KEYS[1], id) or ''
if holder ~= '' and holder ~= '!' then  -- '!': waiting (see reserve.lua)
  return {'reserved', raw, deliveries, redis.call('ZSCORE', KEYS[5], id) or ''}
end
if string.find(raw, '"tags"', 1, true) then
  local ok, env = pcall(cjson.decode, raw)
  local tags = ok and type(env) == 'table' and type(env.tags) == 'table' and env.tags or {}
  local given = {}
  for k = 3, #ARGV do given[ARGV[k]] = true end
  for _, tag in ipairs(tags) do
    if type(tag) == 'string' and not given[tag] then return {'tags', unpack(tags)} end
  end
end
local state = 'ready'
local due = redis.call('ZSCORE', KEYS[4], id)
if due and tonumber(due) > now then state = 'delayed' end
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('ZREM', KEYS[3], string.format('%015d|%s', tonumber(seq), id))
redis.call('ZREM', KEYS[4], id)
for k = 7, #KEYS do
  redis.call('ZREM', KEYS[k], id)
  if redis.call('EXISTS', KEYS[k]) == 0 then redis.call('SREM', KEYS[6], KEYS[k]) end
end
return {state, raw, deliveries, ''}
