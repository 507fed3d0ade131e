-- Count how jobs of a batch ended (count_batch, joined before this).
-- KEYS[1] the batch's record  KEYS[2] its jobs (id -> state, "" pending)
-- ARGV[1] done | failed | cancelled  ARGV[2] now  ARGV[3...] the jobs' ids
return count_batch(KEYS[1], KEYS[2], ARGV[1], ARGV[2], {unpack(ARGV, 3)})
