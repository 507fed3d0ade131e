-- Delete every job of one queue, in every state, with its tag indexes.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved  KEYS[6] wake
-- KEYS[7] claims  KEYS[8] tags  KEYS[9...] the tag indexes the caller read from KEYS[8]
-- Returns the number of jobs deleted, or -1 and nothing deleted if KEYS[8] names an index
-- not among KEYS[9...] (a job got a new tag meanwhile): the caller reads KEYS[8] again.
local given = {}
for k = 9, #KEYS do given[KEYS[k]] = true end
for _, index in ipairs(redis.call('SMEMBERS', KEYS[8])) do
  if not given[index] then return -1 end
end
local count = redis.call('HLEN', KEYS[1])
for s = 1, #KEYS, 1000 do
  redis.call('DEL', unpack(KEYS, s, math.min(s + 999, #KEYS)))
end
return count
