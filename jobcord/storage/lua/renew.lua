-- renew(ns, dq, lease_ttl_s, rid1, token1, rid2, token2, ...)
-- Extends the leases this worker holds. For each pair returns 'ok', 'cancel' (a cancel was
-- asked) or 'lost' (the request is no longer ours: stop running it).
local lease_ttl = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local rid, token = ARGV[i], ARGV[i + 1]
  local cur = redis.call('HMGET', rec_key(rid), 'status', 'lease', 'cancel_requested')
  if cur[1] == 'IN_PROGRESS' and cur[2] == token then
    redis.call('ZADD', key_running(), now + lease_ttl, rid)
    if cur[3] == '1' then out[#out + 1] = 'cancel' else out[#out + 1] = 'ok' end
  else
    out[#out + 1] = 'lost'
  end
end
return out
