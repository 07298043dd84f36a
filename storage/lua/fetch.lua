-- fetch(ns, dq, queue, broker_id, prefetch, aging_every, min_age_ms)
-- dramatiq's fetch with priorities: take message ids from the queue's priority-0 list, then
-- the plain (priority 1) list, then priority 2, into this worker's ack set, as dramatiq's own
-- fetch does. Starvation guard: every `aging_every`-th fetch looks at the levels in reverse
-- order, so under sustained high-priority load lower levels still get about one start in
-- `aging_every` (0 turns the guard off). A fallback consumer (min_age_ms > 0) takes only
-- messages that have waited at least that long. Also refreshes the worker's dramatiq heartbeat.
local queue, bid = ARGV[3], ARGV[4]
local n, every, min_age_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7] or '0')
local cutoff_ms = now * 1000 - min_age_ms
redis.call('ZADD', key_heartbeats(), math.floor(now * 1000), bid)
local levels = {key_queue_p0(queue), key_queue_list(queue), key_queue_p2(queue)}
if every > 0 and redis.call('INCR', key_fetchseq(queue)) % every == 0 then
  levels = {key_queue_p2(queue), key_queue_list(queue), key_queue_p0(queue)}
end
local acks = key_acks(bid, queue)
local ids = {}
for _, list in ipairs(levels) do
  while #ids < n do
    if min_age_ms > 0 then
      local head = redis.call('LINDEX', list, 0)
      if not head then break end
      local raw = redis.call('HGET', key_queue_msgs(queue), head)
      if raw and cjson.decode(raw).message_timestamp > cutoff_ms then break end
    end
    local id = redis.call('LPOP', list)
    if not id then break end
    ids[#ids + 1] = id
    redis.call('SADD', acks, id)
  end
end
if #ids == 0 then return {} end
return redis.call('HMGET', key_queue_msgs(queue), unpack(ids))
