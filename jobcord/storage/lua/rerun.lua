-- rerun(ns, dq, rid, max_in_flight): run a request that ended FAILED, TIMED_OUT, CANCELED or
-- EXPIRED again, under the same id with the same input, as a new attempt with fresh failure
-- counters; admitted like a submission: refused while its app has max_in_flight requests
-- queued or running (0: no cap).
-- Returns {'requeued', attempt} | {'not_ended', status} | {'succeeded', ''} | {'missing', ''}
-- | {'busy', in_flight}.
local rid, cap = ARGV[3], tonumber(ARGV[4] or '0')
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'attempt', 'queue', 'app', 'started_at',
  'finished_at', 'worker', 'device', 'error', 'attempts')
if not cur[1] then return {'missing', ''} end
if cur[1] == 'SUCCEEDED' then return {'succeeded', ''} end
if cur[1] == 'QUEUED' or cur[1] == 'IN_PROGRESS' then return {'not_ended', cur[1]} end
local in_flight = tonumber(redis.call('HGET', key_inflight(), cur[4]) or '0')
if cap > 0 and in_flight >= cap then return {'busy', tostring(in_flight)} end
-- The attempt that ended the request was never appended to the log (readers derive it from
-- these fields, which are about to go): append it now.
if cur[5] and cur[5] ~= '' then
  local list = {}
  if cur[10] then list = cjson.decode(cur[10]) end
  local entry = {attempt = tonumber(cur[2]), outcome = cur[1], started_at = tonumber(cur[5]),
    ended_at = tonumber(cur[6]), worker = cur[7] or nil, device = cur[8] or nil}
  if cur[9] then
    local ok, err = pcall(cjson.decode, cur[9])
    if ok and type(err) == 'table' then entry.error = err.type end
  end
  list[#list + 1] = entry
  while #list > 50 do table.remove(list, 1) end
  redis.call('HSET', rk, 'attempts', cjson.encode(list))
end
local attempt = tonumber(cur[2]) + 1
redis.call('HSET', rk, 'status', 'QUEUED', 'attempt', attempt, 'failures', 0,
  'worker_losses', 0, 'cancel_requested', '0', 'lease', '')
redis.call('HDEL', rk, 'started_at', 'finished_at', 'error', 'output', 'result', 'files',
  'worker', 'device', 'progress', 'progress_message', 'queue_deadline', 'retry_at')
redis.call('PERSIST', rk)
redis.call('PERSIST', ev_key(rid))
redis.call('PERSIST', key_children(rid))
redis.call('PERSIST', key_input(rid))
redis.call('PERSIST', key_chunks(rid))
redis.call('ZREM', key_failed(cur[4]), rid)
redis.call('HINCRBY', key_inflight(), cur[4], 1)
event(rid, 'QUEUED', attempt, 'reason', 'manual retry')
enqueue(cur[3], rid, attempt)
return {'requeued', tostring(attempt)}
