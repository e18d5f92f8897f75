-- KEYS: exp, log.  ARGV: prefix, before, batch.  Returns how many rows it deleted.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, target in ipairs(members) do
  local row = key_of('row', target)
  local fields = redis.call('HMGET', row, 'identity', 'revoked', 'expires_at')
  if fields[1] then redis.call('ZREM', key_of('identity', fields[1]), target) end
  if fields[2] then
    local set, entry = index_entry(target, fields[2], fields[3])
    redis.call('ZREM', set, entry)
  end
  redis.call('DEL', row)
  redis.call('ZREM', KEYS[1], target)
  redis.call('ZREM', KEYS[2], target)
end
return #members
