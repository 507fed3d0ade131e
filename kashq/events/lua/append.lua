-- Append a batch of events to the event stream, trimming it near its max length.
-- KEYS[1] the event stream (<prefix>:{events}:stream)
-- ARGV[1] max length (approximate: MAXLEN ~)  ARGV[2..] one event's JSON each
-- Returns the number of events appended.
-- One call per batch instead of one XADD each: the writer's Python work per
-- event is one string argument, which is what keeps recording off the worker's back.
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return #ARGV - 1
