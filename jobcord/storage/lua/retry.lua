-- retry(ns, dq, rid, token, delay_s, counter_field, error_json, reason, retention_s)
-- Ends the running attempt with a failure that will be tried again after delay_s. Returns the
-- next attempt number, 'canceled', or 'stale' when the lease is no longer ours.
local rid, token, delay, counter, err, reason =
  ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local rk = rec_key(rid)
local head = read_head(rk, 'lease', 'cancel_requested')
if head.status ~= 'IN_PROGRESS' or head.lease ~= token then return 'stale' end
if head.cancel_requested == '1' then
  -- A cancel asked while the attempt failed wins: never retry a canceled request.
  terminate(rid, 'CANCELED', ARGV[9],
    {'error', cjson.encode({type = 'Canceled', message = 'canceled while running'})}, head)
  return 'canceled'
end
redis.call('HINCRBY', rk, counter, 1)
redis.call('HSET', rk, 'error', err)
-- A lost job process or a consumer shutting down is not the request's fault: it goes first.
local front = counter == 'worker_losses' or counter == 'preemptions'
return requeue(rid, head.attempt, now + delay, reason, front)
