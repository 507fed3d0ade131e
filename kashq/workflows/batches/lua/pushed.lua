-- Note that callbacks of a batch were pushed; a batch that has then finished with
-- every due callback pushed expires after its keep time.
-- KEYS[1] the batch's record  KEYS[2] its jobs  KEYS[3] its order list
-- ARGV[1] the callbacks' bits  ARGV[2] milliseconds a finished batch is kept
-- Returns 1 when the batch is settled (finished, every due callback pushed), else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
local f = redis.call('HMGET', KEYS[1], 'pushed', 'due', 'finished_at')
local pushed = bit.bor(tonumber(f[1]), tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'pushed', pushed)
if f[3] ~= '' and pushed == tonumber(f[2]) then
  for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ARGV[2]) end
  return 1
end
return 0
