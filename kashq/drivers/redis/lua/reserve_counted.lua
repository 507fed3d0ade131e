end)()
-- The end of reserve_counting: reserve.lua's reply, then the counts' replies.
for b = 1, batches do reply[#reply + 1] = counted[b] end
reply[#reply + 1] = batches
return reply
