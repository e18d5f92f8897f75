-- KEYS: exp, log.  ARGV: prefix, before, batch.  Returns how many rows it deleted.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, target in ipairs(members) do
  local row = key_of('row', target)
  local identity = redis.call('HGET', row, 'identity')
  if identity then redis.call('ZREM', key_of('identity', identity), target) end
  redis.call('DEL', row)
  redis.call('ZREM', KEYS[1], target)
  redis.call('ZREM', KEYS[2], target)
end
return #members
