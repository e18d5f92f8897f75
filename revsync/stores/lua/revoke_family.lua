-- KEYS: tok-fam:<family>, fam:<family>, fam-exp, tok-exp.  ARGV: prefix, family.  Marks
-- the family revoked, creating its hash if missing (kept as long as its longest-lived
-- member), and returns its records like records.lua: one script, so no rotation between.
if redis.call('HSET', KEYS[2], 'revoked', '1') == 1 then
  local latest = 0
  for _, jti in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local expires = redis.call('ZSCORE', KEYS[4], jti)
    if expires and tonumber(expires) > latest then latest = tonumber(expires) end
  end
  redis.call('ZADD', KEYS[3], latest, ARGV[2])
end
return records(KEYS[1])
