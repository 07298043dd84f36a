-- finish(ns, dq, rid, token, status, retention_s, field, value, ...)
-- Ends the running attempt that holds lease `token`. Returns 'ok', or 'stale' when the lease
-- is no longer ours (nothing is written: a late attempt never changes what callers read).
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
return finish_attempt(ARGV[3], ARGV[4], ARGV[5], ARGV[6], fields)
