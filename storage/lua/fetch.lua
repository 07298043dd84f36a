-- fetch(ns, dq, queue, broker_id, prefetch, aging_every, min_age_ms
--       [, worker, token_prefix, lease_ttl_s, retention_s])
-- dramatiq's fetch with priorities: take message ids from the queue's priority-0 list, then
-- the plain (priority 1) list, then priority 2, into this worker's ack set, as dramatiq's own
-- fetch does. Starvation guard: every `aging_every`-th fetch looks at the levels in reverse
-- order, so under sustained high-priority load lower levels still get about one start in
-- `aging_every` (0 turns the guard off). A fallback consumer (min_age_ms > 0) takes only
-- messages that have waited at least that long. Also refreshes the worker's dramatiq heartbeat.
--
-- With a worker id, each message's attempt is claimed as it is taken (the hot path: one
-- script, not fetch then claim): a message whose attempt is no longer the queued one (stale,
-- expired, missing) is acked here and never leaves Redis, and only claimed messages count
-- towards `prefetch`. Returns {messages, claims}: claims[i] = {token, message id, field,
-- value, ...}, the record of messages[i] as claimed, with its lease token `token_prefix-i`.
local queue, bid = ARGV[3], ARGV[4]
local n, every, min_age_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7] or '0')
local worker, token_prefix = ARGV[8] or '', ARGV[9]
local lease_ttl, retention = tonumber(ARGV[10]), ARGV[11]
local claiming = worker ~= ''
local cutoff_ms = now * 1000 - min_age_ms
redis.call('ZADD', key_heartbeats(), math.floor(now * 1000), bid)
local levels = {key_queue_p0(queue), key_queue_list(queue), key_queue_p2(queue)}
if every > 0 and redis.call('INCR', key_fetchseq(queue)) % every == 0 then
  levels = {key_queue_p2(queue), key_queue_list(queue), key_queue_p0(queue)}
end
local acks, msgs = key_acks(bid, queue), key_queue_msgs(queue)
local ids, claims = {}, {}
local dropped, max_dropped = 0, 1000  -- stale messages acked in one call, at most
for _, list in ipairs(levels) do
  while #ids < n and dropped < max_dropped do
    if min_age_ms > 0 then
      local head = redis.call('LINDEX', list, 0)
      if not head then break end
      local raw = redis.call('HGET', msgs, head)
      if raw and cjson.decode(raw).message_timestamp > cutoff_ms then break end
    end
    local id = redis.call('LPOP', list)
    if not id then break end
    local take = true
    if claiming then
      -- Our own message ids are '<request id>.<attempt>.<seq>' (see enqueue).
      local rid, attempt = string.match(id, '^(.+)%.(%d+)%.%d+$')
      local token = token_prefix .. '-' .. (#ids + 1)
      if rid and claim_attempt(rid, attempt, worker, token, lease_ttl, retention) == 'claimed' then
        local rec = redis.call('HGETALL', rec_key(rid))
        table.insert(rec, 1, id)
        table.insert(rec, 1, token)
        claims[#claims + 1] = rec
      elseif rid then
        take = false  -- nothing to run: acked now (dramatiq's ack is this HDEL)
        redis.call('HDEL', msgs, id)
        dropped = dropped + 1
      else
        claims[#claims + 1] = {''}  -- not one of ours: the worker claims it the slow way
      end
    end
    if take then
      ids[#ids + 1] = id
      redis.call('SADD', acks, id)
    end
  end
end
if #ids == 0 then
  if claiming then return {{}, {}} end
  return {}
end
local messages = redis.call('HMGET', msgs, unpack(ids))
if claiming then return {messages, claims} end
return messages
