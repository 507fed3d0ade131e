-- What the oldest ready job of one queue may be: changes nothing.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed
-- ARGV[1] now
-- Returns {due, raw, raw, ...}: due is the available_at of the first delayed job if it
-- fell due (a ready job no reserve has moved yet), else ''; then the envelope of the
-- first current job of each priority in the ready set, the next a worker takes there.
-- Costs O(priorities x log n): one lookup per priority (and per stale entry passed).
local now = tonumber(ARGV[1])
local out = {''}
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if #first > 0 and tonumber(first[2]) <= now then out[1] = first[2] end
local rank = 0
while true do
  local entry = redis.call('ZRANGE', KEYS[3], rank, rank, 'WITHSCORES')
  if #entry == 0 then return out end
  local member, id = entry[1], string.sub(entry[1], 17)
  local st = redis.call('HGET', KEYS[2], id)
  local current = false
  if st then
    local seq, holder = string.match(st, '^[^|]*|([^|]*)|[^|]*|(.*)$')
    current = tonumber(seq) == tonumber(string.sub(member, 1, 15)) and (holder == '' or holder == '!')
  end
  if current then
    out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
    rank = redis.call('ZCOUNT', KEYS[3], '-inf', entry[2]) -- the next priority's first entry
  else
    rank = rank + 1
  end
end
