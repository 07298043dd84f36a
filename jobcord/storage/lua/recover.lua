-- recover(ns, dq, max_worker_losses, retention_s, batch)
-- Requeues running requests whose lease ran out (their worker died), counting the loss; a
-- request that lost its worker max_worker_losses times ends FAILED; a running request whose
-- cancel was asked ends CANCELED. Then moves due retries from the delayed set to their
-- queues, and expires queued requests past their queue deadline. Returns {rid, outcome, ...}.
local max_losses, retention, batch = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local out = {}
local expired = redis.call('ZRANGEBYSCORE', key_running(), '-inf', now, 'LIMIT', 0, batch)
for _, rid in ipairs(expired) do
  local rk = rec_key(rid)
  local head = read_head(rk, 'cancel_requested')
  redis.call('ZREM', key_running(), rid)
  if head.status == 'IN_PROGRESS' then
    if head.cancel_requested == '1' then
      terminate(rid, 'CANCELED', retention,
        {'error', cjson.encode({type = 'Canceled', message = 'canceled while running'})}, head)
      out[#out + 1] = rid; out[#out + 1] = 'canceled'
    else
      local losses = redis.call('HINCRBY', rk, 'worker_losses', 1)
      local err = cjson.encode({type = 'WorkerLost',
        message = 'the worker running attempt ' .. head.attempt .. ' stopped renewing its lease'})
      if losses >= max_losses then
        terminate(rid, 'FAILED', retention, {'error', err}, head)
        out[#out + 1] = rid; out[#out + 1] = 'failed'
      else
        redis.call('HSET', rk, 'error', err)
        requeue(rid, head.attempt, 0, 'worker lost', true)
        out[#out + 1] = rid; out[#out + 1] = 'requeued'
      end
    end
  end
end
-- Queued requests past max_time_in_queue_seconds end EXPIRED even if no consumer fetches
-- them (their message, if any, is dropped when fetched).
local late = redis.call('ZRANGEBYSCORE', key_deadlines(), '-inf', now, 'LIMIT', 0, batch)
for _, rid in ipairs(late) do
  redis.call('ZREM', key_deadlines(), rid)
  local head = read_head(rec_key(rid))
  if head.status == 'QUEUED' then
    terminate(rid, 'EXPIRED', retention, {'error', cjson.encode({type = 'Expired',
      message = 'not started before max_time_in_queue_seconds'})}, head)
    out[#out + 1] = rid; out[#out + 1] = 'expired'
  end
end
local due = redis.call('ZRANGEBYSCORE', key_delayed(), '-inf', now, 'LIMIT', 0, batch)
for _, rid in ipairs(due) do
  redis.call('ZREM', key_delayed(), rid)
  local cur = redis.call('HMGET', rec_key(rid), 'status', 'attempt', 'queue', 'priority')
  if cur[1] == 'QUEUED' then
    redis.call('HDEL', rec_key(rid), 'retry_at')
    enqueue(cur[3], rid, cur[2], false, cur[4])
    out[#out + 1] = rid; out[#out + 1] = 'promoted'
  end
end
return out
