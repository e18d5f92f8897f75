-- Rows of the Redis store (revsync/stores/_layout.py: where each key lives).
-- KEYS[1..4]: counter, log, exp, hist.  Times travel as Python repr strings and are
-- compared here but never re-formatted, so a float read back is the float written.

-- Members added to a sorted set per ZADD call: a call takes its arguments on Lua's
-- C stack, which holds 8,000.
local ZADD_BATCH = 1000

-- A row as JSON, the array of Change's fields; identity and cutoff may be false.
local function row_doc(seq, kind, key, revoked, expires, identity, cutoff, now)
  return '[' .. seq .. ',' .. cjson.encode(kind) .. ',' .. cjson.encode(key) .. ','
    .. (revoked == '1' and 'true' or 'false') .. ',' .. expires .. ','
    .. (identity and cjson.encode(identity) or 'null') .. ',' .. (cutoff or 'null') .. ','
    .. now .. ']'
end

-- Store the row of one target with its JSON doc, and list it by identity (the log and
-- expiry indexes are written by the caller, a batch at a time).  A row that did not
-- exist has no field to delete.
local function put_row(target, seq, revoked, expires, identity, cutoff, doc, existed)
  local row = key_of('row', target)
  local fields = {'seq', seq, 'revoked', revoked, 'expires_at', expires, 'json', doc}
  local absent = {}
  if identity then
    fields[#fields + 1], fields[#fields + 2] = 'identity', identity
    redis.call('ZADD', key_of('identity', identity), seq, target)
  else
    absent[#absent + 1] = 'identity'
  end
  if cutoff then
    fields[#fields + 1], fields[#fields + 2] = 'cutoff', cutoff
  else
    absent[#absent + 1] = 'cutoff'
  end
  redis.call('HSET', row, unpack(fields))
  if existed and #absent > 0 then
    redis.call('HDEL', row, unpack(absent))
  end
end

-- ZADD score, member pairs (a flat list), ZADD_BATCH members per call; for a member
-- listed twice the later score wins.
local function zadd_all(key, pairs)
  for i = 1, #pairs, 2 * ZADD_BATCH do
    redis.call('ZADD', key, unpack(pairs, i, math.min(i + 2 * ZADD_BATCH - 1, #pairs)))
  end
end

-- Number and write `count` changes whose arguments start at args[first], CHANGE_ARGS
-- each (_ChangeArgs in revsync/stores/redis.py: kind, key, revoked, expires_at,
-- identity, cutoff).  Mirrors revsync.stores._common.merge.  Every row is read before
-- anything is written, so a row that cannot be read (a key of another type) fails the
-- script with nothing written.  Records the write in the history ring and keeps the
-- snapshot's index (index.lua).  Returns the JSON docs of the changes, the first seq,
-- and the docs of the changes merged over a row that existed (the others are exactly
-- their request, numbered).
local function write_changes(now, count, args, first)
  local targets, state, unlisted = {}, {}, {}
  for i = 0, count - 1 do
    local a = first + i * CHANGE_ARGS
    local target = member_of(args[a], args[a + 1])
    targets[i] = target
    if state[target] == nil then
      local old = redis.call('HMGET', key_of('row', target), 'revoked', 'expires_at', 'identity', 'cutoff')
      state[target] = old[1] and old or false
      if old[1] then  -- its entry as the row was before this write, removed below
        local set, entry = index_listing(args[a], args[a + 1], old[1], old[2])
        unlisted[#unlisted + 1] = {index_key(set), entry}
      end
    end
  end
  local last = redis.call('INCRBY', KEYS[1], count)
  index_advance(last - count, last, KEYS[2])
  local out, merged, by_seq, by_expiry = {}, {}, {}, {}
  local last_of, sets, entries = {}, {}, {}  -- index.lua: each target's last row
  for i = 0, count - 1 do
    local a = first + i * CHANGE_ARGS
    local kind, key, revoked = args[a], args[a + 1], args[a + 2]
    local expires, identity, cutoff = args[a + 3], args[a + 4], args[a + 5]
    local target = targets[i]
    local old = state[target]
    if identity == '' then identity = old and old[3] else identity = string.sub(identity, 2) end
    if cutoff == '' then cutoff = false end
    if old then
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
    put_row(target, seq, revoked, expires, identity, cutoff, doc, old)
    state[target] = {revoked, expires, identity, cutoff}
    out[#out + 1] = doc
    if old then merged[#merged + 1] = doc end
    by_seq[#by_seq + 1], by_seq[#by_seq + 2] = seq, target
    by_expiry[#by_expiry + 1], by_expiry[#by_expiry + 2] = expires, target
    last_of[target] = i
    sets[i], entries[i] = index_listing(kind, key, revoked, expires)
  end
  zadd_all(KEYS[2], by_seq)
  zadd_all(KEYS[3], by_expiry)
  index_remove(unlisted)
  local listed = {revoked = {}, registered = {}, others = {}}
  for i = 0, count - 1 do
    if last_of[targets[i]] == i then  -- a target written twice: its last row
      local pairs_of = listed[sets[i]]
      pairs_of[#pairs_of + 1] = string.format('%d', last - count + 1 + i)
      pairs_of[#pairs_of + 1] = entries[i]
    end
  end
  for set, pairs_of in pairs(listed) do zadd_all(index_key(set), pairs_of) end
  redis.call('HSET', KEYS[4], string.format('%d', last % HISTORY_SLOTS),
    string.format('%d', last - count + 1) .. ' ' .. string.format('%d', last) .. ' ' .. now)
  return out, last - count + 1, merged
end
