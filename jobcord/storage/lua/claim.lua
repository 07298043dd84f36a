-- claim(ns, dq, rid, attempt, worker, token, lease_ttl_s, retention_s)
-- Starts attempt `attempt` of a request if it is still the queued one; expires it when its
-- queue deadline has passed. Returns {'claimed', field, value, ...} (the record as it was
-- queued) | {'expired'} | {'stale', status} | {'missing'}. (Consumers claim inside fetch;
-- this starts one given attempt.)
local rid, attempt, worker, token = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local outcome, rec = claim_attempt(rid, attempt, worker, '', token, tonumber(ARGV[7]),
  ARGV[8])
if outcome == 'stale' then return {'stale', redis.call('HGET', rec_key(rid), 'status')} end
if outcome ~= 'claimed' then return {outcome} end
table.insert(rec, 1, 'claimed')
return rec
