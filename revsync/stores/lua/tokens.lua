-- Records of the token registry (revsync/stores/_layout.py): per jti a hash with doc
-- (the JSON array jti, identity, type, family, issued_at, expires_at, metadata),
-- identity, family, rotated ("0"/"1") and seq, listed by identity and by family.

-- The JSON array of [doc, rotated, seq] of the records in one index, by seq.
local function records(index)
  local out = {}
  for _, jti in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local r = redis.call('HMGET', key_of('token', jti), 'doc', 'rotated', 'seq')
    if r[1] then out[#out + 1] = '[' .. r[1] .. ',' .. r[2] .. ',' .. r[3] .. ']' end
  end
  return '[' .. table.concat(out, ',') .. ']'
end

-- Delete one record and its places in the identity and family indexes.
local function drop_record(jti)
  local row = key_of('token', jti)
  local old = redis.call('HMGET', row, 'identity', 'family')
  if old[1] then redis.call('ZREM', key_of('identity_tokens', old[1]), jti) end
  if old[2] then redis.call('ZREM', key_of('family_tokens', old[2]), jti) end
  redis.call('DEL', row)
end
