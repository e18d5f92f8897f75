-- The snapshot's index (revsync/stores/_layout.py): every row listed in exactly one of
-- three sorted sets, scored by its seq.  Revoked jtis and registrations are listed as
-- "<key>\n<expires_at>" (expires_at as written, so it reads back the same float), so
-- a snapshot reads them without looking a row up; every other row as its target.  The
-- hash index_key('state') says up to which seq the index is current ('seq'), whether
-- it was ever complete ('complete'), from which head a build began ('since'), and
-- which build last emptied the sets ('build', a random id: two builds may begin at one
-- head).

-- The set (a name of INDEX_PARTS) and member that list the row of kind:key.
local function index_listing(kind, key, revoked, expires)
  if kind == 'jti' and revoked == '1' then
    return 'revoked', key .. '\n' .. expires
  elseif kind == 'issued' and revoked == '0' then
    return 'registered', key .. '\n' .. expires
  end
  return 'others', member_of(kind, key)
end

-- The set (its key) and member that list a target's row.
local function index_entry(target, revoked, expires)
  local colon = string.find(target, ':', 1, true)
  local set, entry = index_listing(string.sub(target, 1, colon - 1), string.sub(target, colon + 1), revoked, expires)
  return index_key(set), entry
end

local INDEX_SETS = {'revoked', 'registered', 'others'}

-- Rows listed in the index.
local function index_size()
  local size = 0
  for _, what in ipairs(INDEX_SETS) do size = size + redis.call('ZCARD', index_key(what)) end
  return size
end

-- Whether the index lists every row up to the head: complete, current with the counter
-- (KEYS[1] of the scripts that ask) and as many entries as the log (`log`) has rows.
local function index_ready(log)
  local found = redis.call('HMGET', index_key('state'), 'seq', 'complete')
  local head = redis.call('GET', KEYS[1]) or '0'
  return found[2] == '1' and found[1] == head and index_size() == redis.call('ZCARD', log)
end

-- Which build the index's sets are of: its head and id ("since build"), so that a build
-- begun again at the same head is another one.  snapshot_plan.lua returns it;
-- snapshot_check.lua and index_finish.lua compare it.
local function index_build()
  local found = redis.call('HMGET', index_key('state'), 'since', 'build')
  return (found[1] or '') .. ' ' .. (found[2] or '')
end

-- After a write handed out the seqs (before, last]: the index stays current only if
-- it was current with `before`.  A writer that keeps no index (an older revsync) moves
-- the counter alone, so the index falls behind and is built again.  A store with no
-- row yet starts with a complete index.
local function index_advance(before, last, log)
  local state = index_key('state')
  local at = redis.call('HGET', state, 'seq')
  if at == string.format('%d', before) then
    redis.call('HSET', state, 'seq', string.format('%d', last))
  elseif not at and before == 0 and redis.call('ZCARD', log) == 0 and index_size() == 0 then
    redis.call('HSET', state, 'seq', string.format('%d', last), 'complete', '1')
  end
end

-- Remove entries gathered as {set, member} pairs, INDEX_BATCH members per ZREM (a call
-- takes its arguments on Lua's C stack).
local INDEX_BATCH = 1000
local function index_remove(entries)
  local by_set = {}
  for _, e in ipairs(entries) do
    local members = by_set[e[1]]
    if not members then members = {}; by_set[e[1]] = members end
    members[#members + 1] = e[2]
  end
  for set, members in pairs(by_set) do
    for i = 1, #members, INDEX_BATCH do
      redis.call('ZREM', set, unpack(members, i, math.min(i + INDEX_BATCH - 1, #members)))
    end
  end
end
