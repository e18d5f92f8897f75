-- KEYS: counter, log.  ARGV: prefix, the build (index.lua, index_build) a snapshot's
-- plan returned (snapshot_plan.lua).  Ends a snapshot read from the index: 1 if the
-- index still lists every row (index.lua, index_ready) and no build emptied its sets
-- since the plan, so that no span read after the plan missed an entry; else 0, and the
-- snapshot reads again.  (A snapshot that finds the index behind, an older revsync having written or
-- pruned, empties the sets to build them again; so does a set lost meanwhile, evicted
-- or deleted by hand, leave fewer entries than rows.)
if index_ready(KEYS[2]) and index_build() == ARGV[2] then
  return 1
end
return 0
