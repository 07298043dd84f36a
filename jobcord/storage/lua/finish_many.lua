-- finish_many(ns, dq, retention_s, n, then n times: rid, token, status, k, field, value, ...
--             (k values))
-- Ends several running attempts at once (a batch's members), each as finish would, each
-- fenced by its own lease token. Returns 'ok' or 'stale' per attempt, in order.
local retention, n = ARGV[3], tonumber(ARGV[4])
local out, i = {}, 5
for _ = 1, n do
  local rid, token, status, k = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fields = {}
  for j = i + 4, i + 3 + k do fields[#fields + 1] = ARGV[j] end
  out[#out + 1] = finish_attempt(rid, token, status, retention, fields)
  i = i + 4 + k
end
return out
