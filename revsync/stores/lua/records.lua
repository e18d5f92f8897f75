-- KEYS: an index of records (tok-id or tok-fam).  ARGV: prefix.  Returns the JSON
-- array of [doc, rotated, seq] ascending by seq.
return records(KEYS[1])
