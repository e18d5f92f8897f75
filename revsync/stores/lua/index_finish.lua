-- KEYS: counter, log.  ARGV: prefix, the build's head (snapshot_plan.lua).  Called by a
-- snapshot that read (and listed) every row up to at least that head: the index is
-- complete if that build is still the one going on, every write since kept the index,
-- and it lists as many rows as the log.  Else the next snapshot builds from scratch.
-- Returns 1 if it marked the index complete.
local state = index_key('state')
local found = redis.call('HMGET', state, 'seq', 'since')
if found[2] ~= ARGV[2] then return 0 end  -- another build began since: that one finishes
local head = redis.call('GET', KEYS[1]) or '0'
if found[1] == head and index_size() == redis.call('ZCARD', KEYS[2]) then
  redis.call('HSET', state, 'complete', '1')
  return 1
end
redis.call('HDEL', state, 'since')
return 0
