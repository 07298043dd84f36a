-- finish(ns, dq, rid, token, status, retention_s, ack_bid, ack_queue, ack_id, field, value, ...)
-- Ends the running attempt that holds lease `token`. Returns 'ok' or 'stale'; 'ok+acked'
-- when it also acked the broker message that carried the attempt (ack_* non-empty): one
-- round trip instead of two on the hot path, and the same atomic step.
local rid, token, status, retention = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ack_bid, ack_queue, ack_id = ARGV[7], ARGV[8], ARGV[9]
local cur = redis.call('HMGET', rec_key(rid), 'status', 'lease', 'attempt')
if cur[1] ~= 'IN_PROGRESS' or cur[2] ~= token then return 'stale' end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
terminate(rid, status, cur[3], retention, fields)
-- dramatiq's own ack: out of the worker's ack set, then out of the queue's message hash.
if ack_id ~= '' and redis.call('SREM', key_acks(ack_bid, ack_queue), ack_id) > 0 then
  redis.call('HDEL', key_queue_msgs(ack_queue), ack_id)
  return 'ok+acked'
end
return 'ok'
