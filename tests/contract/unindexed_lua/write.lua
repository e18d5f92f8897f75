-- KEYS: counter, log, exp, hist.  ARGV: prefix, now, then the changes as one JSON array
-- of strings, CHANGE_ARGS per change (see write_changes): one argument instead of six
-- per change, decoded in C.  Returns the JSON array [first seq, [docs of the changes
-- merged over an existing row]].
local changes = cjson.decode(ARGV[3])
local _, first, merged = write_changes(ARGV[2], #changes / CHANGE_ARGS, changes, 1)
return '[' .. string.format('%d', first) .. ',[' .. table.concat(merged, ',') .. ']]'
