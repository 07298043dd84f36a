-- submit(ns, dq, rid, idem_key, idem_value_hash, idem_ttl, queue, max_queue_s, field, value, ...)
-- Creates the record, claims the idempotency key and enqueues attempt 1, all at once.
-- Returns {'created', rid} | {'existing', rid} | {'conflict', rid}.
local rid, idem, idem_hash, idem_ttl, queue = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local max_queue_s = tonumber(ARGV[8])
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
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
local rk = rec_key(rid)
redis.call('HSET', rk, 'id', rid, 'status', 'QUEUED', 'attempt', 1, 'queue', queue,
  'created_at', now_s, unpack(fields))
if max_queue_s and max_queue_s > 0 then
  redis.call('HSET', rk, 'queue_deadline', string.format('%.6f', now + max_queue_s))
  redis.call('ZADD', ns .. ':deadlines', now + max_queue_s, rid)
end
event(rid, 'QUEUED', 1)
enqueue(queue, rid, 1)
return {'created', rid}
