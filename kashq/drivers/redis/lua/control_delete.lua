-- Delete one control record.
-- KEYS[1] control
-- ARGV[1] now  ARGV[2] name
-- Returns 1 if a live record was deleted, 0 if there was none or it had expired
-- (an expired record is deleted all the same).
local raw = redis.call('HGET', KEYS[1], ARGV[2])
if not raw then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
local ok, record = pcall(cjson.decode, raw)
local exp = ok and type(record) == 'table' and tonumber(record.exp)
if exp and exp <= tonumber(ARGV[1]) then return 0 end
return 1
