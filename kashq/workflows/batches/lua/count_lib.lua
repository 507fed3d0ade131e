-- count_batch: count how jobs of one batch ended and make due the callbacks that makes
-- due, in one step (the rule of kashq.workflows.batches.base.count, kept in step with
-- it). Joined before count.lua, and before the driver's reserve that counts too.
-- record_key: the batch's record  jobs_key: its jobs (id -> state, "" pending)
-- new: done | failed | cancelled  now: the time  ids: a table of the jobs' ids
-- Returns nil when nothing changed (all counted already, or an unknown batch or job);
-- else {total, done, failed, cancelled, due, pushed, name, cancelled_at, finished_at,
-- created_at, allow_failures, made due now (bits: then 1, catch 2, finally 4), 1 if this
-- count cancelled the batch else 0, options (only when something was made due, else "")}.
local function count_batch(record_key, jobs_key, new, now, ids)
  if redis.call('EXISTS', record_key) == 0 then return nil end
  local changed = 0
  local olds = redis.call('HMGET', jobs_key, unpack(ids))
  local moved, from = {}, {} -- job id, new state pairs; how many left each old state
  for k, old in ipairs(olds) do
    if old and (old == '' or (old ~= 'done' and new == 'done')) then
      moved[#moved + 1] = ids[k]
      moved[#moved + 1] = new
      if old ~= '' then from[old] = (from[old] or 0) + 1 end
      changed = changed + 1
    end
  end
  if changed == 0 then return nil end
  redis.call('HSET', jobs_key, unpack(moved))
  redis.call('HINCRBY', record_key, new, changed)
  for old, n in pairs(from) do redis.call('HINCRBY', record_key, old, -n) end

  local fields = {'total', 'done', 'failed', 'cancelled', 'due', 'pushed', 'name',
    'cancelled_at', 'finished_at', 'created_at', 'allow_failures'}
  local f = redis.call('HMGET', record_key, unpack(fields))
  local total, done = tonumber(f[1]), tonumber(f[2])
  local failed, cancelled = tonumber(f[3]), tonumber(f[4])
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
    f[8] = now
    redis.call('HSET', record_key, 'cancelled_at', now)
  end
  if pending == 0 and f[9] == '' then
    f[9] = now
    redis.call('HSET', record_key, 'finished_at', now)
  end
  if due ~= 0 then
    f[5] = bit.bor(was_due, due)
    redis.call('HSET', record_key, 'due', f[5])
  end
  f[12] = due
  f[13] = cancel
  f[14] = (due ~= 0 or cancel ~= 0) and redis.call('HGET', record_key, 'options') or ''
  return f
end
