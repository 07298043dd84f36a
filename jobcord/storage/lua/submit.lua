-- submit(ns, dq, rid, idem_key, idem_value_hash, idem_ttl, queue, max_queue_s, delay_s,
--        max_in_flight, input_bin, recent_cap, priority, start_at, field, value, ...)
-- Creates the record, claims the idempotency key and enqueues attempt 1, all at once; refuses
-- when the app already has max_in_flight requests queued or running (0: no cap). start_at
-- (epoch s, '' for none; an eta) holds it back until then on Redis's clock, not the client's.
-- Returns {'created', rid} | {'existing', rid} | {'conflict', rid} | {'busy', in_flight}.
local rid, idem, idem_hash, idem_ttl, queue = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local max_queue_s, delay_s, cap = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then
    local sep = string.find(existing, '|', 1, true)
    local other = string.sub(existing, 1, sep - 1)
    if string.sub(existing, sep + 1) == idem_hash then return {'existing', other} end
    return {'conflict', other}
  end
end
local input_bin, recent_cap, priority = ARGV[11], tonumber(ARGV[12]), ARGV[13]
local start_at = tonumber(ARGV[14])
local fields = {}
for i = 15, #ARGV do fields[#fields + 1] = ARGV[i] end
local app = fields[2]  -- 'app' is always the first field
local in_flight = redis.call('HINCRBY', key_inflight(), app, 1)
if cap > 0 and in_flight > cap then
  redis.call('HINCRBY', key_inflight(), app, -1)
  return {'busy', tostring(in_flight - 1)}
end
if idem ~= '' then redis.call('SET', idem, rid .. '|' .. idem_hash, 'EX', idem_ttl) end
local rk = rec_key(rid)
-- A delayed request waits in the delayed set (promoted by maintenance) and its queue deadline
-- counts from when it becomes runnable.
local runnable_at = now + math.max(delay_s or 0, 0)
if start_at then runnable_at = math.max(start_at, now) end
if max_queue_s and max_queue_s > 0 then
  fields[#fields + 1] = 'queue_deadline'
  fields[#fields + 1] = string.format('%.6f', runnable_at + max_queue_s)
  redis.call('ZADD', key_deadlines(), runnable_at + max_queue_s, rid)
end
-- A binary input (msgpack) lives beside the record, so the hash stays text; a large one is
-- in the result store (input_ref among the fields).
if input_bin ~= '' then
  redis.call('SET', key_input(rid), input_bin)
  fields[#fields + 1] = 'input_format'
  fields[#fields + 1] = 'msgpack'
end
redis.call('HSET', rk, 'id', rid, 'status', 'QUEUED', 'attempt', 1, 'queue', queue,
  'created_at', now_s, 'priority', priority, unpack(fields))
-- A request made by a running job is linked to it (the parent's tree and cancel).
local parent = redis.call('HGET', rk, 'parent_id')
if parent then
  redis.call('ZADD', key_children(parent), now, rid)
  redis.call('HINCRBY', rec_key(parent), 'child_count', 1)  -- readers skip leaves' trees
end
-- The app's recent requests, newest last (what `jobcord list` and the dashboard read),
-- capped: a large cap is trimmed on about one submission in 64 (picked by the random id's
-- last two hex digits), so it holds about recent_cap + 64 ids; the records stay until their
-- retention.
local recent = key_recent(app)
redis.call('ZADD', recent, now, rid)
if recent_cap < 1000 or (string.sub(rid, -1) == '0' and string.sub(rid, -2, -2) < '4') then
  redis.call('ZREMRANGEBYRANK', recent, 0, -recent_cap - 1)
end
-- No QUEUED event is stored: readers make it from created_at (RequestStore.events); a
-- one-entry stream would cost ~4.5 KB of Redis for every queued request.
if runnable_at > now then
  redis.call('HSET', rk, 'retry_at', string.format('%.6f', runnable_at))
  redis.call('ZADD', key_delayed(), runnable_at, rid)
else
  enqueue(queue, rid, 1, false, priority)
end
return {'created', rid}
