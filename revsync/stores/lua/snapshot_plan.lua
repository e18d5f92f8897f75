-- KEYS: counter, log.  ARGV: prefix, chunk, anchors, a fresh random id.  Starts a snapshot
-- (RedisStore.snapshot): the head, and whether the index (index.lua) holds every row up
-- to it.  If it does: per set (revoked, registered, others) the seqs that cut its
-- entries up to the head into spans of at most `chunk`, read a span per script run.  If
-- not: the head from which a build of the index runs, by the snapshot that reads every
-- row (snapshot.lua); a build going on is joined, unless a write that kept no index
-- happened since it began.  Returns [1 if ready else 0, head, that build's head or "",
-- the JSON array of the newest `anchors` rows up to the head, ascending, the cuts of
-- each set, then which build the sets are of (index.lua, index_build)].  A build from
-- scratch empties the sets under the id given: snapshot_check.lua and index_finish.lua
-- tell by it that the sets were emptied after a plan.
local head = redis.call('GET', KEYS[1]) or '0'
local state = index_key('state')
local found = redis.call('HMGET', state, 'seq', 'since', 'complete')
local at, since, complete = found[1], found[2], found[3]
local listed = redis.call('ZCARD', KEYS[2])
local ready, build = false, ''
if index_ready(KEYS[2]) then
  ready = true
elseif listed == 0 then  -- nothing to list: complete as it is
  for _, what in ipairs(INDEX_SETS) do redis.call('UNLINK', index_key(what)) end
  redis.call('HSET', state, 'seq', head, 'since', head, 'complete', '1', 'build', ARGV[4])
  ready = true
elseif complete ~= '1' and since and at == head then
  build = since
else  -- never built, or a writer that keeps no index wrote since: from scratch
  for _, what in ipairs(INDEX_SETS) do redis.call('UNLINK', index_key(what)) end
  redis.call('HDEL', state, 'complete')
  redis.call('HSET', state, 'seq', head, 'since', head, 'build', ARGV[4])
  build = head
end
local anchors = {}
local newest = redis.call('ZREVRANGEBYSCORE', KEYS[2], head, '-inf', 'LIMIT', 0, ARGV[3])
for i = #newest, 1, -1 do
  local doc = redis.call('HGET', key_of('row', newest[i]), 'json')
  if doc then anchors[#anchors + 1] = doc end
end
local out = {ready and 1 or 0, head, build, '[' .. table.concat(anchors, ',') .. ']'}
local chunk = tonumber(ARGV[2])
for _, what in ipairs(INDEX_SETS) do
  local cuts = {}
  if ready then
    local set = index_key(what)
    local count = redis.call('ZCOUNT', set, '-inf', head)
    for rank = chunk - 1, count - 2, chunk do
      cuts[#cuts + 1] = redis.call('ZRANGE', set, rank, rank, 'WITHSCORES')[2]
    end
  end
  out[#out + 1] = cuts
end
out[#out + 1] = index_build()
return out
