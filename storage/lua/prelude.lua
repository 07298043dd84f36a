-- Shared helpers, prepended to every jobcord script (after the key_* functions generated from
-- storage/keys.py, the only place key names are spelled). ARGV[1] and ARGV[2] still carry
-- the namespaces. The time comes from Redis so that leases written by one host and read by
-- another agree.
pcall(redis.replicate_commands)
local ns = ARGV[1]
local dq = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_s = string.format('%.6f', now)

local rec_key = key_record
local ev_key = key_events

-- Append a status change to the request's event stream.
local function event(rid, status, attempt, extra_k, extra_v)
  if extra_k then
    redis.call('XADD', ev_key(rid), 'MAXLEN', '~', 1000, '*',
      'status', status, 'at', now_s, 'attempt', attempt, extra_k, extra_v)
  else
    redis.call('XADD', ev_key(rid), 'MAXLEN', '~', 1000, '*',
      'status', status, 'at', now_s, 'attempt', attempt)
  end
end

-- The list a request waits on: one per priority level (0 highest; 1, the default, is the
-- plain dramatiq queue). All levels share the queue's message hash, so dramatiq's ack works.
local function level_list(queue, priority)
  if priority == '0' then return key_queue_p0(queue) end
  if priority == '2' then return key_queue_p2(queue) end
  return key_queue_list(queue)
end

-- Put a message for (rid, attempt) on a dramatiq queue, in dramatiq's own layout, and wake
-- one idle consumer of that queue.
local function enqueue(queue, rid, attempt, front)
  local seq = redis.call('INCR', key_msgseq())
  local mid = rid .. '.' .. attempt .. '.' .. seq
  local data = cjson.encode({
    queue_name = queue, actor_name = 'jobcord_execute', args = {rid, tonumber(attempt)},
    kwargs = {}, options = {redis_message_id = mid}, message_id = mid,
    message_timestamp = math.floor(now * 1000)})
  redis.call('HSET', key_queue_msgs(queue), mid, data)
  -- At the front: work already in service that lost its worker (not its own fault) goes
  -- before everything that arrived since, so recovery is as fast as the lease allows.
  local push = 'RPUSH'
  if front then push = 'LPUSH' end
  redis.call(push, level_list(queue, redis.call('HGET', rec_key(rid), 'priority')), mid)
  local wake = key_wake(queue)
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 63)
end

-- Append the attempt that is ending to the record's history (only if it was running): where
-- it ran, when, and how it ended. Keeps the last 50.
local function log_attempt(rid, outcome, reason, err_json)
  local rk = rec_key(rid)
  local f = redis.call('HMGET', rk, 'status', 'attempt', 'started_at', 'worker', 'device',
    'attempts')
  if f[1] ~= 'IN_PROGRESS' then return end
  local list = {}
  if f[6] then list = cjson.decode(f[6]) end
  -- HMGET gives false for a missing field: store nothing rather than false.
  local entry = {attempt = tonumber(f[2]), outcome = outcome, started_at = tonumber(f[3]),
    ended_at = now, worker = f[4] or nil, device = f[5] or nil, reason = reason}
  if err_json then
    local ok, err = pcall(cjson.decode, err_json)
    if ok and type(err) == 'table' then entry.error = err.type end
  end
  list[#list + 1] = entry
  while #list > 50 do table.remove(list, 1) end
  redis.call('HSET', rk, 'attempts', cjson.encode(list))
end

-- Declared here, defined after terminate (they call each other down a request tree).
local cancel_tree

-- Move a request to a terminal status (fields: a flat list of extra field/value pairs).
local function terminate(rid, status, attempt, retention, fields)
  local rk = rec_key(rid)
  local err_json = nil
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'error' then err_json = fields[i + 1] end
  end
  log_attempt(rid, status, nil, err_json)
  local app = redis.call('HGET', rk, 'app')
  if redis.call('HINCRBY', key_inflight(), app, -1) < 0 then
    redis.call('HSET', key_inflight(), app, 0)  -- requests from before the counter existed
  end
  redis.call('HSET', rk, 'status', status, 'finished_at', now_s)
  if #fields > 0 then redis.call('HSET', rk, unpack(fields)) end
  redis.call('HDEL', rk, 'lease')
  redis.call('ZREM', key_running(), rid)
  redis.call('ZREM', key_delayed(), rid)
  redis.call('ZREM', key_deadlines(), rid)
  event(rid, status, attempt)
  redis.call('EXPIRE', rk, retention)
  redis.call('EXPIRE', ev_key(rid), retention)
  redis.call('EXPIRE', key_chunks(rid), retention)
  redis.call('EXPIRE', key_children(rid), retention)
  redis.call('EXPIRE', key_input(rid), retention)
  -- The dead-letter view: failed requests by app, newest last.
  if status == 'FAILED' then
    redis.call('ZADD', key_failed(redis.call('HGET', rk, 'app')), now, rid)
  end
  -- A finished request with a webhook is due for delivery now (one delivery per request).
  if redis.call('HEXISTS', rk, 'webhook_endpoint') == 1 then
    redis.call('HSET', rk, 'webhook_status', 'PENDING')
    redis.call('ZADD', key_webhooks_due(), now, rid)
  end
  -- A parent that is canceled or timed out takes its unfinished children with it.
  if status == 'CANCELED' or status == 'TIMED_OUT' then cancel_tree(rid, retention) end
end

cancel_tree = function(parent, retention)
  local children = redis.call('ZRANGE', key_children(parent), 0, -1)
  for _, child in ipairs(children) do
    local cur = redis.call('HMGET', rec_key(child), 'status', 'attempt')
    if cur[1] == 'QUEUED' then
      terminate(child, 'CANCELED', cur[2], retention, {'error', cjson.encode({type = 'Canceled',
        message = 'its parent request ' .. parent .. ' was canceled or timed out'})})
    elseif cur[1] == 'IN_PROGRESS' then
      redis.call('HSET', rec_key(child), 'cancel_requested', '1')
      redis.call('PUBLISH', key_cancels(), child)
      cancel_tree(child, retention)
    end
  end
end

-- Put a request back on its queue as a new attempt, now or at eta (seconds since the epoch).
local function requeue(rid, attempt, eta, reason, front)
  local rk = rec_key(rid)
  log_attempt(rid, 'RETRY', reason, redis.call('HGET', rk, 'error'))
  local next_attempt = tonumber(attempt) + 1
  redis.call('HSET', rk, 'status', 'QUEUED', 'attempt', next_attempt)
  redis.call('HDEL', rk, 'lease', 'started_at', 'worker', 'device')
  redis.call('ZREM', key_running(), rid)
  event(rid, 'QUEUED', next_attempt, 'reason', reason)
  if eta > now then
    redis.call('HSET', rk, 'retry_at', string.format('%.6f', eta))
    redis.call('ZADD', key_delayed(), eta, rid)
  else
    redis.call('HDEL', rk, 'retry_at')
    enqueue(redis.call('HGET', rk, 'queue'), rid, next_attempt, front)
  end
  return next_attempt
end

-- Start attempt `attempt` of a request if it is still the queued one (QUEUED -> IN_PROGRESS
-- with lease `token`); expire it when its queue deadline has passed. Returns 'claimed',
-- 'expired', 'stale' or 'missing'. Used by claim and by fetch (which claims as it takes).
local function claim_attempt(rid, attempt, worker, token, lease_ttl, retention)
  local rk = rec_key(rid)
  local cur = redis.call('HMGET', rk, 'status', 'attempt', 'queue_deadline')
  if not cur[1] then return 'missing' end
  if cur[1] ~= 'QUEUED' or cur[2] ~= attempt then return 'stale' end
  if cur[3] and cur[3] ~= '' and tonumber(cur[3]) < now then
    terminate(rid, 'EXPIRED', attempt, retention,
      {'error', cjson.encode({type = 'Expired', message = 'not started before max_time_in_queue_seconds'})})
    return 'expired'
  end
  redis.call('HSET', rk, 'status', 'IN_PROGRESS', 'started_at', now_s, 'worker', worker,
    'lease', token)
  redis.call('ZREM', key_deadlines(), rid)  -- started: the queue deadline no longer applies
  redis.call('ZADD', key_running(), now + lease_ttl, rid)
  event(rid, 'IN_PROGRESS', attempt)
  return 'claimed'
end
