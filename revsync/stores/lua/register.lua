-- KEYS: counter, log, exp, hist, tok-exp, fam-exp.  ARGV: prefix, now, rotate ("" =
-- none, else "=" .. jti), count, then CHANGE_ARGS per record's change (see
-- write_changes), then RECORD_ARGS per record (_RecordArgs in revsync/stores/redis.py:
-- jti, identity, family, expires_at, rotated, doc).  Returns the JSON array of the
-- written changes, or nil (writing nothing) when the rotated jti is unknown, already
-- rotated or of a revoked family: the compare-and-set runs in the same script.  Each
-- record's family gets its hash and its expiry extended to the record's.
local now, rotate, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
if rotate ~= '' then
  local row = key_of('token', string.sub(rotate, 2))
  local current = redis.call('HMGET', row, 'rotated', 'family')
  if current[1] ~= '0' then return false end
  if current[2] and redis.call('HGET', key_of('family', current[2]), 'revoked') == '1' then
    return false
  end
  redis.call('HSET', row, 'rotated', '1')
end
if count == 0 then return '[]' end
local out, first = write_changes(now, count, ARGV, 5)
for i = 0, count - 1 do
  local a = 5 + count * CHANGE_ARGS + i * RECORD_ARGS
  local jti, identity, family = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local expires, rotated, doc = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local row = key_of('token', jti)
  local seq = string.format('%d', first + i)
  drop_record(jti)
  redis.call('HSET', row, 'doc', doc, 'identity', identity, 'rotated', rotated, 'seq', seq)
  redis.call('ZADD', key_of('identity_tokens', identity), seq, jti)
  if family ~= '' then
    family = string.sub(family, 2)
    redis.call('HSET', row, 'family', family)
    redis.call('ZADD', key_of('family_tokens', family), seq, jti)
    redis.call('HSETNX', key_of('family', family), 'revoked', '0')
    local latest = redis.call('ZSCORE', KEYS[6], family)
    if not latest or tonumber(latest) < tonumber(expires) then
      redis.call('ZADD', KEYS[6], expires, family)
    end
  end
  redis.call('ZADD', KEYS[5], expires, jti)
end
return '[' .. table.concat(out, ',') .. ']'
