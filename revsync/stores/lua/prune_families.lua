-- KEYS: fam-exp.  ARGV: prefix, before, batch.  Returns how many families it deleted.
local families = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, family in ipairs(families) do
  redis.call('DEL', key_of('family', family))
  redis.call('ZREM', KEYS[1], family)
end
return #families
