-- KEYS: the index's set of other rows (index.lua).  ARGV: prefix, after (exclusive),
-- upto (inclusive), live_after.  One span of a snapshot: the JSON array of those rows
-- listed with a seq in it that expire at or after live_after (one HMGET each: the few
-- rows that are not revoked jtis or registrations).
local targets = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], ARGV[3])
local live, out = tonumber(ARGV[4]), {}
for _, target in ipairs(targets) do
  local fields = redis.call('HMGET', key_of('row', target), 'expires_at', 'json')
  if fields[1] and tonumber(fields[1]) >= live then out[#out + 1] = fields[2] end
end
return '[' .. table.concat(out, ',') .. ']'
