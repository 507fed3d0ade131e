-- Read the live control records whose names start with a prefix, deleting expired ones.
-- KEYS[1] control
-- ARGV[1] now  ARGV[2] name prefix
-- Each field holds {"v": value, "exp": unix time or null}; it is live while exp > now.
-- Returns a flat list: name, value, name, value, ...
-- Expiry is checked and acted on in one step, so a record overwritten meanwhile
-- is never deleted by a reader that saw its old, expired copy.
local now, prefix = tonumber(ARGV[1]), ARGV[2]
local fields = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #fields, 2 do
  local name = fields[i]
  local ok, record = pcall(cjson.decode, fields[i + 1])
  if ok and type(record) == 'table' and type(record.v) == 'string' then
    local exp = tonumber(record.exp) -- cjson's null is not a number: nil, never expires
    if exp and exp <= now then
      redis.call('HDEL', KEYS[1], name)
    elseif string.sub(name, 1, #prefix) == prefix then
      live[#live + 1] = name
      live[#live + 1] = record.v
    end
  end
end
return live
