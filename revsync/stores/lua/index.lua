-- The snapshot's index (revsync/stores/_layout.py): every row listed in exactly one of
-- three sorted sets, scored by its seq.  Revoked jtis and registrations are listed as
-- "<key>\n<expires_at>" (expires_at as written, so it reads back the same float), so
-- a snapshot reads them without looking a row up; every other row as its target.  The
-- hash index_key('state') says up to which seq the index is current ('seq'), whether
-- it was ever complete ('complete'), and from which head a build began ('since').

-- The set and member that list a target's row.
local function index_entry(target, revoked, expires)
  local colon = string.find(target, ':', 1, true)
  local kind = string.sub(target, 1, colon - 1)
  if kind == 'jti' and revoked == '1' then
    return index_key('revoked'), string.sub(target, colon + 1) .. '\n' .. expires
  elseif kind == 'issued' and revoked == '0' then
    return index_key('registered'), string.sub(target, colon + 1) .. '\n' .. expires
  end
  return index_key('others'), target
end

local INDEX_SETS = {'revoked', 'registered', 'others'}

-- Rows listed in the index.
local function index_size()
  local size = 0
  for _, what in ipairs(INDEX_SETS) do size = size + redis.call('ZCARD', index_key(what)) end
  return size
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

-- Remove (ZREM) or add (ZADD) entries gathered as {set, score, member} triples,
-- ZADD_BATCH members per call (a call takes its arguments on Lua's C stack).
local INDEX_BATCH = 1000
local function index_apply(command, entries)
  local by_set = {}
  for _, e in ipairs(entries) do
    local args = by_set[e[1]]
    if not args then args = {}; by_set[e[1]] = args end
    if command == 'ZADD' then args[#args + 1] = e[2] end
    args[#args + 1] = e[3]
  end
  local step = command == 'ZADD' and 2 * INDEX_BATCH or INDEX_BATCH
  for set, args in pairs(by_set) do
    for i = 1, #args, step do
      redis.call(command, set, unpack(args, i, math.min(i + step - 1, #args)))
    end
  end
end
