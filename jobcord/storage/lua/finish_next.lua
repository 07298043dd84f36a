-- finish_next(ns, dq, retention_s, rid, token, status, n, field, value, ... (n values),
--             worker, device, token_prefix, lease_ttl_s, n, lowest_first, queue, min_age_ms, ...)
-- A consumer's steady state in one round trip: end the attempt holding `token` (as finish),
-- then take its next work (as fetch). Returns {finish's outcome, fetch's claims}.
local retention, nf = ARGV[3], tonumber(ARGV[7])
local fields = {}
for i = 8, 7 + nf do fields[#fields + 1] = ARGV[i] end
local outcome = finish_attempt(ARGV[4], ARGV[5], ARGV[6], retention, fields)
return {outcome, fetch_claims(ARGV, 8 + nf, retention)}
