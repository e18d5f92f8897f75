-- KEYS: a sorted set of targets.  ARGV: prefix, min score, limit (-1 = all).  Returns
-- the JSON array of their rows.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'LIMIT', 0, ARGV[3])
local out = {}
for _, target in ipairs(members) do
  local doc = redis.call('HGET', key_of('row', target), 'json')
  if doc then out[#out + 1] = doc end
end
return '[' .. table.concat(out, ',') .. ']'
