-- rerun(ns, dq, rid): run a request that ended FAILED, TIMED_OUT, CANCELED or EXPIRED again,
-- under the same id with the same input, as a new attempt with fresh failure counters.
-- Returns {'requeued', attempt} | {'not_ended', status} | {'succeeded', ''} | {'missing', ''}.
local rid = ARGV[3]
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'attempt', 'queue', 'app')
if not cur[1] then return {'missing', ''} end
if cur[1] == 'SUCCEEDED' then return {'succeeded', ''} end
if cur[1] == 'QUEUED' or cur[1] == 'IN_PROGRESS' then return {'not_ended', cur[1]} end
local attempt = tonumber(cur[2]) + 1
redis.call('HSET', rk, 'status', 'QUEUED', 'attempt', attempt, 'failures', 0,
  'worker_losses', 0, 'cancel_requested', '0')
redis.call('HDEL', rk, 'started_at', 'finished_at', 'error', 'output', 'result', 'files',
  'worker', 'device', 'lease', 'progress', 'progress_message', 'queue_deadline', 'retry_at')
redis.call('PERSIST', rk)
redis.call('PERSIST', ev_key(rid))
redis.call('PERSIST', ns .. ':req:' .. rid .. ':children')
redis.call('PERSIST', ns .. ':req:' .. rid .. ':input')
redis.call('ZREM', ns .. ':failed:' .. cur[4], rid)
redis.call('HINCRBY', ns .. ':inflight', cur[4], 1)
event(rid, 'QUEUED', attempt, 'reason', 'manual retry')
enqueue(cur[3], rid, attempt)
return {'requeued', tostring(attempt)}
