-- KEYS: log.  ARGV: prefix, after (exclusive), upto (inclusive), limit, live_after.
-- One chunk of a snapshot (RedisStore.snapshot): the targets listed with a seq in
-- (after, upto], at most `limit` of them, whose rows expire at or after live_after.
-- Returns [targets read, last seq read, revoked jti keys (JSON array), their expiries
-- (comma-separated), registered jti keys, their expiries, the JSON array of every other
-- row, the JSON array of the last two rows read (expired or not)].
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], ARGV[3],
  'LIMIT', 0, ARGV[4], 'WITHSCORES')
local live = tonumber(ARGV[5])
local revoked, revoked_exp, registered, registered_exp, others, tail = {}, {}, {}, {}, {}, {}
local count = #members / 2
for i = 1, #members, 2 do
  local target = members[i]
  local row = key_of('row', target)
  local fields = redis.call('HMGET', row, 'revoked', 'expires_at')
  if i >= #members - 3 then tail[#tail + 1] = redis.call('HGET', row, 'json') end
  if fields[2] and tonumber(fields[2]) >= live then
    local colon = string.find(target, ':', 1, true)
    local kind = string.sub(target, 1, colon - 1)
    if kind == 'jti' and fields[1] == '1' then
      revoked[#revoked + 1] = string.sub(target, colon + 1)
      revoked_exp[#revoked_exp + 1] = fields[2]
    elseif kind == 'issued' and fields[1] == '0' then
      registered[#registered + 1] = string.sub(target, colon + 1)
      registered_exp[#registered_exp + 1] = fields[2]
    else
      others[#others + 1] = redis.call('HGET', row, 'json')
    end
  end
end
-- cjson writes an empty table as {}: an empty list must read back as one.
local function keys_doc(keys) return #keys == 0 and '[]' or cjson.encode(keys) end
return {count, count > 0 and members[#members] or ARGV[2], keys_doc(revoked),
  table.concat(revoked_exp, ','), keys_doc(registered), table.concat(registered_exp, ','),
  '[' .. table.concat(others, ',') .. ']', '[' .. table.concat(tail, ',') .. ']'}
