-- claim(ns, dq, rid, attempt, worker, token, lease_ttl_s, retention_s)
-- Starts attempt `attempt` of a request if it is still the queued one; expires it when its
-- queue deadline has passed. Returns {'claimed', field, value, ...} | {'expired'} |
-- {'stale', status} | {'missing'}.
local rid, attempt, worker, token = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local lease_ttl, retention = tonumber(ARGV[7]), ARGV[8]
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'attempt', 'queue_deadline', 'cancel_requested')
if not cur[1] then return {'missing'} end
if cur[1] ~= 'QUEUED' or cur[2] ~= attempt then return {'stale', cur[1]} end
if cur[3] and cur[3] ~= '' and tonumber(cur[3]) < now then
  terminate(rid, 'EXPIRED', attempt, retention,
    {'error', cjson.encode({type = 'Expired', message = 'not started before max_time_in_queue_seconds'})})
  return {'expired'}
end
redis.call('HSET', rk, 'status', 'IN_PROGRESS', 'started_at', now_s, 'worker', worker,
  'lease', token)
redis.call('ZREM', key_deadlines(), rid)  -- started: the queue deadline no longer applies
redis.call('ZADD', key_running(), now + lease_ttl, rid)
event(rid, 'IN_PROGRESS', attempt)
local out = redis.call('HGETALL', rk)
table.insert(out, 1, 'claimed')
return out
