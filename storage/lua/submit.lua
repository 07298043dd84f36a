-- submit(ns, dq, rid, idem_key, idem_value_hash, idem_ttl, queue, max_queue_s, delay_s,
--        field, value, ...)
-- Creates the record, claims the idempotency key and enqueues attempt 1, all at once.
-- Returns {'created', rid} | {'existing', rid} | {'conflict', rid}.
local rid, idem, idem_hash, idem_ttl, queue = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local max_queue_s, delay_s = tonumber(ARGV[8]), tonumber(ARGV[9])
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then
    local sep = string.find(existing, '|', 1, true)
    local other = string.sub(existing, 1, sep - 1)
    if string.sub(existing, sep + 1) == idem_hash then return {'existing', other} end
    return {'conflict', other}
  end
  redis.call('SET', idem, rid .. '|' .. idem_hash, 'EX', idem_ttl)
end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
local rk = rec_key(rid)
redis.call('HSET', rk, 'id', rid, 'status', 'QUEUED', 'attempt', 1, 'queue', queue,
  'created_at', now_s, unpack(fields))
-- A delayed request waits in the delayed set (promoted by maintenance) and its queue deadline
-- counts from when it becomes runnable.
local runnable_at = now + math.max(delay_s or 0, 0)
if max_queue_s and max_queue_s > 0 then
  redis.call('HSET', rk, 'queue_deadline', string.format('%.6f', runnable_at + max_queue_s))
  redis.call('ZADD', ns .. ':deadlines', runnable_at + max_queue_s, rid)
end
event(rid, 'QUEUED', 1)
if runnable_at > now then
  redis.call('HSET', rk, 'retry_at', string.format('%.6f', runnable_at))
  redis.call('ZADD', ns .. ':delayed', runnable_at, rid)
else
  enqueue(queue, rid, 1)
end
return {'created', rid}
