-- KEYS: log.  ARGV: prefix, after (exclusive), upto (inclusive), limit, live_after,
-- "lines" or "json", "1" to list every row read in the index (index.lua) as it goes.
-- One chunk of a snapshot read without the index (RedisStore.snapshot, which builds
-- it so): the targets listed with a seq in (after, upto], at most `limit` of them, whose
-- rows expire at or after live_after.  Returns [targets read, last seq read, revoked jtis (their targets,
-- "jti:<key>", one a line; a JSON array of keys with "json"), their expiries
-- (comma-separated), registrations (the same, "issued:<key>"), their expiries, the JSON
-- array of every other row, the JSON array of the last two rows read (expired or not),
-- how many revoked jtis, how many registrations].  One HMGET per row is all it asks.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], ARGV[3],
  'LIMIT', 0, ARGV[4], 'WITHSCORES')
local live, json, build = tonumber(ARGV[5]), ARGV[6] == 'json', ARGV[7] == '1'
local revoked, revoked_exp, registered, registered_exp, others, tail = {}, {}, {}, {}, {}, {}
local listed = {}  -- set -> score, member pairs, ZADDed at the end, a batch per call
local JTI, ISSUED = string.byte('j'), string.byte('s')  -- 'jti:', 'issued:' ('identity:')
for i = 1, #members, 2 do
  local target = members[i]
  local row = key_of('row', target)
  local fields = redis.call('HMGET', row, 'revoked', 'expires_at')
  if build and fields[1] then
    local set, entry = index_entry(target, fields[1], fields[2])
    local pairs_of = listed[set]
    if not pairs_of then pairs_of = {}; listed[set] = pairs_of end
    pairs_of[#pairs_of + 1], pairs_of[#pairs_of + 2] = members[i + 1], entry
  end
  if i >= #members - 3 then
    local doc = redis.call('HGET', row, 'json')
    if doc then tail[#tail + 1] = doc end  -- a target listed without its row: none to keep
  end
  if fields[2] and tonumber(fields[2]) >= live then
    local kind = string.byte(target, 1)
    if kind == JTI and fields[1] == '1' then
      revoked[#revoked + 1] = json and string.sub(target, 5) or target
      revoked_exp[#revoked_exp + 1] = fields[2]
    elseif kind ~= JTI and string.byte(target, 2) == ISSUED and fields[1] == '0' then
      registered[#registered + 1] = json and string.sub(target, 8) or target
      registered_exp[#registered_exp + 1] = fields[2]
    else
      local doc = redis.call('HGET', row, 'json')
      if doc then others[#others + 1] = doc end
    end
  end
end
for set, pairs_of in pairs(listed) do
  for i = 1, #pairs_of, 2 * INDEX_BATCH do
    redis.call('ZADD', set, unpack(pairs_of, i, math.min(i + 2 * INDEX_BATCH - 1, #pairs_of)))
  end
end
local function keys_of(targets)
  if not json then return table.concat(targets, '\n') end
  return #targets == 0 and '[]' or cjson.encode(targets)  -- cjson writes {} for an empty table
end
return {#members / 2, #members > 0 and members[#members] or ARGV[2], keys_of(revoked),
  table.concat(revoked_exp, ','), keys_of(registered), table.concat(registered_exp, ','),
  '[' .. table.concat(others, ',') .. ']', '[' .. table.concat(tail, ',') .. ']',
  #revoked, #registered}
