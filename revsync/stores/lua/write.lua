-- KEYS: counter, log, exp, hist.  ARGV: prefix, now, count, then CHANGE_ARGS per change
-- (see write_changes).  Returns the JSON array of the written changes.
local out = write_changes(ARGV[2], tonumber(ARGV[3]), 4)
return '[' .. table.concat(out, ',') .. ']'
