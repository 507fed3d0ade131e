-- Count one event in a fixed window's counter; a new counter expires when its window ends.
-- KEYS[1] counter key of the window
-- ARGV[1] milliseconds until the window ends
-- Returns the count in this window, this event included.
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
