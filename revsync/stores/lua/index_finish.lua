-- KEYS: counter, log.  ARGV: prefix, the build (index.lua, index_build) that
-- snapshot_plan.lua returned.  Called by a snapshot that read (and listed) every row
-- up to at least that build's head: the index is complete if that build is still the
-- one going on (the same head is not enough: a build begun again at the same head
-- emptied what this one listed before it), every write since kept the index, and it
-- lists as many rows as the log.  Else the next snapshot builds from scratch.  Returns
-- 1 if it marked the index complete.
local state = index_key('state')
if index_build() ~= ARGV[2] then return 0 end  -- another build began since: that one finishes
local found = redis.call('HMGET', state, 'seq')
local head = redis.call('GET', KEYS[1]) or '0'
if found[1] == head and index_size() == redis.call('ZCARD', KEYS[2]) then
  redis.call('HSET', state, 'complete', '1')
  return 1
end
redis.call('HDEL', state, 'since')
return 0
