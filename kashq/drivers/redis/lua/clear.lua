-- Delete every job of one queue, in every state.
-- KEYS[1] jobs  KEYS[2] state  KEYS[3] ready  KEYS[4] delayed  KEYS[5] reserved  KEYS[6] wake
-- KEYS[7] claims
-- Returns the number of jobs deleted.
local count = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return count
