-- retry(ns, dq, rid, token, delay_s, counter_field, error_json, reason, retention_s)
-- Ends the running attempt with a failure that will be tried again after delay_s. Returns the
-- next attempt number, 'canceled', or 'stale' when the lease is no longer ours.
local rid, token, delay, counter, err, reason =
  ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'lease', 'attempt', 'cancel_requested')
if cur[1] ~= 'IN_PROGRESS' or cur[2] ~= token then return 'stale' end
if cur[4] == '1' then
  -- A cancel asked while the attempt failed wins: never retry a canceled request.
  terminate(rid, 'CANCELED', cur[3], ARGV[9],
    {'error', cjson.encode({type = 'Canceled', message = 'canceled while running'})})
  return 'canceled'
end
redis.call('HINCRBY', rk, counter, 1)
redis.call('HSET', rk, 'error', err)
-- A lost job process or a consumer shutting down is not the request's fault: it goes first.
local front = counter == 'worker_losses' or counter == 'preemptions'
return requeue(rid, cur[3], now + delay, reason, front)
