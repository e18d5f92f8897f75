-- KEYS: tok-exp.  ARGV: prefix, before, batch.  Returns how many records it deleted.
local jtis = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, jti in ipairs(jtis) do
  drop_record(jti)
  redis.call('ZREM', KEYS[1], jti)
end
return #jtis
