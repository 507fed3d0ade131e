-- Count how jobs of a batch ended, and make due the callbacks that makes due, in one
-- step (the rule of kashq.workflows.batches.base.count, kept in step with it).
-- KEYS[1] the batch's record  KEYS[2] its jobs (id -> state, "" pending)
-- ARGV[1] done | failed | cancelled  ARGV[2] now  ARGV[3...] the jobs' ids
-- Returns nil when nothing changed (all counted already, or an unknown batch or job);
-- else {total, done, failed, cancelled, due, pushed, name, cancelled_at, finished_at,
-- created_at, allow_failures, made due now (bits: then 1, catch 2, finally 4), 1 if this
-- count cancelled the batch else 0, options (only when something was made due, else "")}.
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local new, changed = ARGV[1], 0
local olds = redis.call('HMGET', KEYS[2], unpack(ARGV, 3))
local moved, from = {}, {} -- job id, new state pairs; how many left each old state
for k, old in ipairs(olds) do
  if old and (old == '' or (old ~= 'done' and new == 'done')) then
    moved[#moved + 1] = ARGV[k + 2]
    moved[#moved + 1] = new
    if old ~= '' then from[old] = (from[old] or 0) + 1 end
    changed = changed + 1
  end
end
if changed == 0 then return nil end
redis.call('HSET', KEYS[2], unpack(moved))
redis.call('HINCRBY', KEYS[1], new, changed)
for old, n in pairs(from) do redis.call('HINCRBY', KEYS[1], old, -n) end

local fields = {'total', 'done', 'failed', 'cancelled', 'due', 'pushed', 'name',
  'cancelled_at', 'finished_at', 'created_at', 'allow_failures'}
local f = redis.call('HMGET', KEYS[1], unpack(fields))
local total, done, failed, cancelled = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
local was_due = tonumber(f[5])
local pending = total - done - failed - cancelled
local due = 0
if new == 'failed' then due = bit.bor(due, 2) end
if done == total and f[8] == '' then due = bit.bor(due, 1) end
if pending == 0 then due = bit.bor(due, 4) end
due = bit.band(due, bit.bnot(was_due))
local cancel = 0
if new == 'failed' and f[11] == '0' and f[8] == '' then
  cancel = 1
  f[8] = ARGV[2]
  redis.call('HSET', KEYS[1], 'cancelled_at', ARGV[2])
end
if pending == 0 and f[9] == '' then
  f[9] = ARGV[2]
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
end
if due ~= 0 then
  f[5] = bit.bor(was_due, due)
  redis.call('HSET', KEYS[1], 'due', f[5])
end
f[12] = due
f[13] = cancel
f[14] = (due ~= 0 or cancel ~= 0) and redis.call('HGET', KEYS[1], 'options') or ''
return f
