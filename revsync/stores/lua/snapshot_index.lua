-- KEYS: a set of the index (index.lua) of revoked jtis or registrations.  ARGV: after
-- (exclusive), upto (inclusive), "lines" or "json".  One span of a snapshot: its entries
-- ("<key>\n<expires_at>") by seq, one a line, or as a JSON array with "json".  Returns
-- [how many, the entries].  snapshot_plan.lua cut the spans: no run reads more than a
-- chunk (an entry only ever leaves a span; new ones are listed past the head).
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], ARGV[2])
if ARGV[3] == 'json' then
  return {#entries, #entries == 0 and '[]' or cjson.encode(entries)}
end
return {#entries, table.concat(entries, '\n')}
