-- Rows of the Redis store (revsync/stores/_layout.py: where each key lives).
-- KEYS[1..4]: counter, log, exp, hist.  Times travel as Python repr strings and are
-- compared here but never re-formatted, so a float read back is the float written.

-- A row as JSON, the array of Change's fields; identity and cutoff may be false.
local function row_doc(seq, kind, key, revoked, expires, identity, cutoff, now)
  return '[' .. seq .. ',' .. cjson.encode(kind) .. ',' .. cjson.encode(key) .. ','
    .. (revoked == '1' and 'true' or 'false') .. ',' .. expires .. ','
    .. (identity and cjson.encode(identity) or 'null') .. ',' .. (cutoff or 'null') .. ','
    .. now .. ']'
end

-- Store the row of one target with its JSON doc, and list it in the indexes.
local function put_row(target, seq, revoked, expires, identity, cutoff, doc)
  local row = key_of('row', target)
  redis.call('HSET', row, 'seq', seq, 'revoked', revoked, 'expires_at', expires, 'json', doc)
  if identity then
    redis.call('HSET', row, 'identity', identity)
    redis.call('ZADD', key_of('identity', identity), seq, target)
  else
    redis.call('HDEL', row, 'identity')
  end
  if cutoff then
    redis.call('HSET', row, 'cutoff', cutoff)
  else
    redis.call('HDEL', row, 'cutoff')
  end
  redis.call('ZADD', KEYS[2], seq, target)
  redis.call('ZADD', KEYS[3], expires, target)
end

-- Number and write `count` changes whose arguments start at ARGV[first], CHANGE_ARGS
-- each (_ChangeArgs in revsync/stores/redis.py: kind, key, revoked, expires_at,
-- identity, cutoff).  Mirrors revsync.stores._common.merge.  Records the write in the
-- history ring.  Returns the JSON docs of the changes and the first seq.
local function write_changes(now, count, first)
  local last = redis.call('INCRBY', KEYS[1], count)
  local out = {}
  for i = 0, count - 1 do
    local a = first + i * CHANGE_ARGS
    local kind, key, revoked = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    local expires, identity, cutoff = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    local target = member_of(kind, key)
    local old = redis.call('HMGET', key_of('row', target), 'revoked', 'expires_at', 'identity', 'cutoff')
    if identity == '' then identity = old[3] else identity = string.sub(identity, 2) end
    if cutoff == '' then cutoff = false end
    if old[1] then
      if revoked == '0' then
        expires = old[2]
        if not cutoff then cutoff = old[4] end
      elseif old[1] == '1' then
        if tonumber(old[2]) > tonumber(expires) then expires = old[2] end
        if old[4] and (not cutoff or tonumber(old[4]) > tonumber(cutoff)) then cutoff = old[4] end
      end
      if old[3] and old[3] ~= identity then
        redis.call('ZREM', key_of('identity', old[3]), target)
      end
    end
    local seq = string.format('%d', last - count + 1 + i)
    local doc = row_doc(seq, kind, key, revoked, expires, identity, cutoff, now)
    put_row(target, seq, revoked, expires, identity, cutoff, doc)
    out[#out + 1] = doc
  end
  redis.call('HSET', KEYS[4], string.format('%d', last % HISTORY_SLOTS),
    string.format('%d', last - count + 1) .. ' ' .. string.format('%d', last) .. ' ' .. now)
  return out, last - count + 1
end
