-- webhook(ns, dq, op, ...): the delivery queue {ns}:webhooks:due (request ids by due time).
--   claim(lease_s, batch)            -> ids due now, each leased for lease_s
--   delivered(rid, status_code, ms)  -> webhook_status DELIVERED
--   failed(rid, error, delay_s|-1, status_code|'', ms|'')
--                                    -> retry after delay_s, or FAILED when delay_s < 0;
--                                       the answer's code and time when there was one
--   defer(rid, delay_s)              -> due again in delay_s, not an attempt (receiver busy)
--   again(rid)                       -> re-deliver now (status PENDING, attempts from 0); a
--                                       dramatiq actor target runs its logic again too
local op = ARGV[3]
local due = key_webhooks_due()
if op == 'claim' then
  local lease, batch = tonumber(ARGV[4]), tonumber(ARGV[5])
  local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, batch)
  for _, rid in ipairs(ids) do redis.call('ZADD', due, now + lease, rid) end
  return ids
end
local rid = ARGV[4]
local rk = rec_key(rid)
if redis.call('EXISTS', rk) == 0 then
  redis.call('ZREM', due, rid)
  return 'missing'
end
if op == 'delivered' then
  redis.call('HINCRBY', rk, 'webhook_attempts', 1)
  redis.call('HSET', rk, 'webhook_status', 'DELIVERED', 'webhook_last_status_code', ARGV[5],
    'webhook_last_ms', ARGV[6], 'webhook_delivered_at', now_s)
  redis.call('HDEL', rk, 'webhook_last_error')
  redis.call('ZREM', due, rid)
elseif op == 'failed' then
  redis.call('HINCRBY', rk, 'webhook_attempts', 1)
  redis.call('HSET', rk, 'webhook_last_error', ARGV[5])
  if (ARGV[7] or '') ~= '' then
    redis.call('HSET', rk, 'webhook_last_status_code', ARGV[7], 'webhook_last_ms', ARGV[8])
  else
    redis.call('HDEL', rk, 'webhook_last_status_code', 'webhook_last_ms')
  end
  local delay = tonumber(ARGV[6])
  if delay < 0 then
    redis.call('HSET', rk, 'webhook_status', 'FAILED')
    redis.call('ZREM', due, rid)
  else
    redis.call('ZADD', due, now + delay, rid)
  end
elseif op == 'defer' then
  redis.call('ZADD', due, 'XX', now + tonumber(ARGV[5]), rid)
elseif op == 'again' then
  redis.call('HSET', rk, 'webhook_status', 'PENDING', 'webhook_attempts', 0)
  redis.call('HDEL', rk, 'on_complete_done_attempt', 'on_complete_processed_at')
  redis.call('ZADD', due, now, rid)
  wake_deliverer()
end
return redis.call('HGET', rk, 'webhook_status')
