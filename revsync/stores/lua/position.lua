-- KEYS: store, counter, hist.  ARGV: a fresh random id, "1" to start a new epoch.  The
-- store's identity is created on first use: after Redis lost everything, a new id.
-- Returns [store_id, epoch, head, head's history entry or ""].
if redis.call('HSETNX', KEYS[1], 'id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'epoch', '1')
end
if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[1], 'epoch', 1) end
local found = redis.call('HMGET', KEYS[1], 'id', 'epoch')
local head = redis.call('GET', KEYS[2]) or '0'
local entry = redis.call('HGET', KEYS[3], string.format('%d', tonumber(head) % HISTORY_SLOTS))
return {found[1], found[2], head, entry or ''}
