-- rerun(ns, dq, rid, max_in_flight): run a request that ended FAILED, TIMED_OUT, CANCELED or
-- EXPIRED again, under the same id with the same input, as a new attempt with fresh failure
-- counters; admitted like a submission: refused while its app has max_in_flight requests
-- queued or running (0: no cap).
-- Returns {'requeued', attempt} | {'not_ended', status} | {'succeeded', ''} | {'missing', ''}
-- | {'busy', in_flight}.
local rid, cap = ARGV[3], tonumber(ARGV[4] or '0')
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'attempt', 'queue', 'app')
if not cur[1] then return {'missing', ''} end
if cur[1] == 'SUCCEEDED' then return {'succeeded', ''} end
if cur[1] == 'QUEUED' or cur[1] == 'IN_PROGRESS' then return {'not_ended', cur[1]} end
local in_flight = tonumber(redis.call('HGET', key_inflight(), cur[4]) or '0')
if cap > 0 and in_flight >= cap then return {'busy', tostring(in_flight)} end
local attempt = tonumber(cur[2]) + 1
redis.call('HSET', rk, 'status', 'QUEUED', 'attempt', attempt, 'failures', 0,
  'worker_losses', 0, 'cancel_requested', '0')
redis.call('HDEL', rk, 'started_at', 'finished_at', 'error', 'output', 'result', 'files',
  'worker', 'device', 'lease', 'progress', 'progress_message', 'queue_deadline', 'retry_at')
redis.call('PERSIST', rk)
redis.call('PERSIST', ev_key(rid))
redis.call('PERSIST', key_children(rid))
redis.call('PERSIST', key_input(rid))
redis.call('ZREM', key_failed(cur[4]), rid)
redis.call('HINCRBY', key_inflight(), cur[4], 1)
event(rid, 'QUEUED', attempt, 'reason', 'manual retry')
enqueue(cur[3], rid, attempt)
return {'requeued', tostring(attempt)}
