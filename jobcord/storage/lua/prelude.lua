-- Shared helpers, in front of every jobcord script (after the key_* functions generated from
-- storage/keys.py, the only place key names are spelled). On Redis 7+ they are defined once,
-- when the function library loads; `begin` runs at the start of every call and sets the
-- per-call state below. ARGV[1] and ARGV[2] carry the namespaces (ns and dq, declared with
-- the key functions: 'jobcord' or, on a Redis Cluster, the hash-tagged '{jobcord}'). The time
-- comes from Redis so that leases written by one host and read by another agree.
local now, now_s

local function begin(argv)
  ns, dq = argv[1], argv[2]
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  now_s = string.format('%.6f', now)
end

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
-- queue's own list).
local function level_list(queue, priority)
  if priority == '0' or priority == 0 then return key_queue_p0(queue) end
  if priority == '2' or priority == 2 then return key_queue_p2(queue) end
  return key_queue_list(queue)
end

-- Put attempt `attempt` of a request on its queue and wake one idle consumer of that queue.
-- A message is only '<request id>.<attempt>.<enqueued at, ms>': the record is the truth, and
-- the time lets a fallback consumer judge its age without another read.
local function enqueue(queue, rid, attempt, front, priority)
  local mid = rid .. '.' .. attempt .. '.' .. math.floor(now * 1000)
  priority = priority or redis.call('HGET', rec_key(rid), 'priority')
  -- At the front: work already in service that lost its worker (not its own fault) goes
  -- before everything that arrived since, so recovery is as fast as the lease allows.
  if front then
    redis.call('LPUSH', level_list(queue, priority), mid)
  else
    redis.call('RPUSH', level_list(queue, priority), mid)
  end
  local wake = key_wake(queue)
  if redis.call('LPUSH', wake, '1') > 64 then redis.call('LTRIM', wake, 0, 63) end
end

-- Tell a waiting webhook deliverer that a delivery is due (it also looks every tick).
local function wake_deliverer()
  if redis.call('LPUSH', key_webhooks_wake(), '1') > 16 then
    redis.call('LTRIM', key_webhooks_wake(), 0, 15)
  end
end

-- The fields `terminate` needs, read in the caller's one HMGET (`head` names them in order).
local TERMINATE_FIELDS = {'status', 'attempt', 'app', 'webhook_endpoint', 'child_count',
  'input_format', 'streamed', 'on_complete'}

local function read_head(rk, ...)
  local names = {unpack(TERMINATE_FIELDS)}
  for _, extra in ipairs({...}) do names[#names + 1] = extra end
  local values = redis.call('HMGET', rk, unpack(names))
  local head = {}
  for i, name in ipairs(names) do head[name] = values[i] end
  return head
end

-- Declared here, defined after terminate (they call each other down a request tree).
local cancel_tree

-- Move a request to a terminal status (fields: a flat list of extra field/value pairs). The
-- attempt that ends here is not appended to the record's `attempts` log: readers make its
-- entry from the record's own fields (RequestRecord.from_hash), which saves a JSON rewrite
-- on every finish. `head`: the record's TERMINATE_FIELDS, as read_head returned them.
local function terminate(rid, status, retention, fields, head)
  local rk = rec_key(rid)
  local app = head.app
  if redis.call('HINCRBY', key_inflight(), app, -1) < 0 then
    redis.call('HSET', key_inflight(), app, 0)  -- requests from before the counter existed
  end
  -- The lease goes with the same write ('' reads as absent): a stale token never matches.
  redis.call('HSET', rk, 'status', status, 'finished_at', now_s, 'lease', '', unpack(fields))
  if head.status == 'IN_PROGRESS' then
    redis.call('ZREM', key_running(), rid)
  else  -- queued: waiting for a retry's eta or with a queue deadline
    redis.call('ZREM', key_delayed(), rid)
    redis.call('ZREM', key_deadlines(), rid)
  end
  -- A small inline output rides on the SUCCEEDED event too: a waiting caller has its
  -- result without reading the record (a SUCCEEDED request is never run again).
  local output = nil
  if status == 'SUCCEEDED' then
    for i = 1, #fields - 1, 2 do
      if fields[i] == 'output' and #fields[i + 1] <= 1024 then output = fields[i + 1] end
    end
  end
  if output then
    event(rid, status, head.attempt, 'output', output)
  else
    event(rid, status, head.attempt)
  end
  redis.call('EXPIRE', rk, retention)
  redis.call('EXPIRE', ev_key(rid), retention)
  if head.streamed then redis.call('EXPIRE', key_chunks(rid), retention) end
  if head.child_count then redis.call('EXPIRE', key_children(rid), retention) end
  if head.input_format == 'msgpack' then redis.call('EXPIRE', key_input(rid), retention) end
  -- The dead-letter view: failed requests by app, newest last.
  if status == 'FAILED' then redis.call('ZADD', key_failed(app), now, rid) end
  -- A finished request with a webhook (or a dramatiq actor to tell) is due for delivery now
  -- (one delivery per request).
  if head.webhook_endpoint or head.on_complete then
    redis.call('HSET', rk, 'webhook_status', 'PENDING')
    redis.call('ZADD', key_webhooks_due(), now, rid)
    wake_deliverer()
  end
  -- A parent that is canceled or timed out takes its unfinished children with it.
  if head.child_count and (status == 'CANCELED' or status == 'TIMED_OUT') then
    cancel_tree(rid, retention)
  end
end

cancel_tree = function(parent, retention)
  local children = redis.call('ZRANGE', key_children(parent), 0, -1)
  for _, child in ipairs(children) do
    local head = read_head(rec_key(child))
    if head.status == 'QUEUED' then
      terminate(child, 'CANCELED', retention, {'error', cjson.encode({type = 'Canceled',
        message = 'its parent request ' .. parent .. ' was canceled or timed out'})}, head)
    elseif head.status == 'IN_PROGRESS' then
      redis.call('HSET', rec_key(child), 'cancel_requested', '1')
      redis.call('PUBLISH', key_cancels(), child)
      cancel_tree(child, retention)
    end
  end
end

-- Append the attempt that is ending, without ending the request, to the record's history:
-- where it ran, when, and how it ended (RETRY and a reason). Keeps the last 50.
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

-- Put a request back on its queue as a new attempt, now or at eta (seconds since the epoch).
local function requeue(rid, attempt, eta, reason, front)
  local rk = rec_key(rid)
  log_attempt(rid, 'RETRY', reason, redis.call('HGET', rk, 'error'))
  local next_attempt = tonumber(attempt) + 1
  redis.call('HSET', rk, 'status', 'QUEUED', 'attempt', next_attempt, 'lease', '')
  redis.call('HDEL', rk, 'started_at', 'worker', 'device')
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
-- with lease `token`, on `worker` and its `device`s, '' for none); expire it when its queue deadline has passed. Returns 'claimed' and
-- the record as it was before the claim (HGETALL), or 'expired', 'stale' or 'missing'. Used
-- by claim and by fetch (which claims as it takes).
local function claim_attempt(rid, attempt, worker, device, token, lease_ttl, retention, runs)
  local rk = rec_key(rid)
  local rec = redis.call('HGETALL', rk)
  if #rec == 0 then return 'missing' end
  local status, current, deadline, job, version
  for i = 1, #rec, 2 do
    local k = rec[i]
    if k == 'status' then status = rec[i + 1]
    elseif k == 'attempt' then current = rec[i + 1]
    elseif k == 'queue_deadline' then deadline = rec[i + 1]
    elseif k == 'job' then job = rec[i + 1]
    elseif k == 'job_version' then version = rec[i + 1] end
  end
  if status ~= 'QUEUED' or current ~= tostring(attempt) then return 'stale' end
  if deadline and deadline ~= '' and tonumber(deadline) and tonumber(deadline) < now then
    terminate(rid, 'EXPIRED', retention, {'error', cjson.encode({type = 'Expired',
      message = 'not started before max_time_in_queue_seconds'})}, read_head(rk))
    return 'expired'
  end
  -- Another version of the job (or a job this consumer lacks): not ours to run, nor to fail.
  -- A record without a version (an older producer) runs anywhere, as before.
  if runs and job and version and version ~= '' and runs[job] ~= version then
    return 'unfit', job .. '@' .. version
  end
  if deadline and deadline ~= '' then
    redis.call('ZREM', key_deadlines(), rid)  -- started: the queue deadline no longer applies
  end
  if device ~= '' then
    redis.call('HSET', rk, 'status', 'IN_PROGRESS', 'started_at', now_s, 'worker', worker,
      'lease', token, 'device', device)
  else
    redis.call('HSET', rk, 'status', 'IN_PROGRESS', 'started_at', now_s, 'worker', worker,
      'lease', token)
  end
  redis.call('ZADD', key_running(), now + lease_ttl, rid)
  event(rid, 'IN_PROGRESS', current)
  return 'claimed', rec
end

-- 'job=version,job=version' -> {job = version}; '' -> nil (a consumer that runs any version).
local function parse_runs(spec)
  if spec == nil or spec == '' then return nil end
  local runs = {}
  for job, version in string.gmatch(spec, '([^=,]+)=([^,]+)') do runs[job] = version end
  return runs
end

-- Take up to n messages and claim each one's attempt (see fetch.lua). argv[i..]: worker,
-- device, token_prefix, lease_ttl_s, n, lowest_first, runs ('job=version,...': the job
-- versions this consumer runs; '' any), then queue, min_age_ms pairs.
local function fetch_claims(argv, i, retention)
  local worker, device, token_prefix = argv[i], argv[i + 1], argv[i + 2]
  local lease_ttl, n = tonumber(argv[i + 3]), tonumber(argv[i + 4])
  local lowest_first = argv[i + 5] == '1'
  local runs = parse_runs(argv[i + 6])
  local first_queue = i + 7
  local now_ms = now * 1000
  local claims = {}
  local dropped, max_dropped = 0, 1000  -- stale messages dropped in one call, at most
  local parked_in = {}  -- queues where this call set a message aside for another version

  local function take(queue, id)
    -- '<request id>.<attempt>.<enqueued at ms>' (see enqueue); before 0.2 the third part
    -- was a sequence number and the message also lived in dramatiq's hash: drop it there.
    local rid, attempt, third = string.match(id, '^(%x+)%.(%d+)%.(%d+)$')
    if third and tonumber(third) < 1000000000000 then
      redis.call('HDEL', key_queue_msgs(queue), id)
    end
    local token = token_prefix .. '-' .. (#claims + 1)
    local outcome, rec = 'missing', nil
    if rid then
      outcome, rec = claim_attempt(rid, attempt, worker, device, token, lease_ttl, retention, runs)
    end
    if outcome == 'claimed' then
      table.insert(rec, 1, id)
      table.insert(rec, 1, token)
      claims[#claims + 1] = rec
    elseif outcome == 'unfit' then  -- rec is 'job@version': aside for its consumers
      redis.call('RPUSH', key_queue_parked(queue, rec), id)
      redis.call('SADD', key_queue_parked_index(queue), rec)
      redis.call('SADD', key_parked_queues(), queue)
      parked_in[queue] = true
      dropped = dropped + 1
    else
      dropped = dropped + 1
    end
  end

  -- First what consumers of another version set aside for ours (it has waited longest; on
  -- a fallback queue too, whose own class may have no consumer of that version).
  -- (One EXISTS per fetch in the usual case: no rolling deploy, nothing set aside.)
  if runs and redis.call('EXISTS', key_parked_queues()) == 1 then
    for q = first_queue, #argv - 1, 2 do
      local index = key_queue_parked_index(argv[q])
      if redis.call('EXISTS', index) == 1 then
        for _, member in ipairs(redis.call('SMEMBERS', index)) do
          local job, version = string.match(member, '^(.*)@([^@]*)$')
          if job and runs[job] == version then
            local list = key_queue_parked(argv[q], member)
            while #claims < n and dropped < max_dropped do
              local id = redis.call('LPOP', list)
              if not id then break end
              take(argv[q], id)
            end
            if redis.call('EXISTS', list) == 0 then redis.call('SREM', index, member) end
          end
        end
      end
    end
  end

  local levels = {key_queue_p0, key_queue_list, key_queue_p2}
  if lowest_first then levels = {key_queue_p2, key_queue_list, key_queue_p0} end
  for _, level in ipairs(levels) do
    for q = first_queue, #argv - 1, 2 do
      local list, min_age_ms = level(argv[q]), tonumber(argv[q + 1])
      while #claims < n and dropped < max_dropped do
        if min_age_ms > 0 then
          local head = redis.call('LINDEX', list, 0)
          if not head then break end
          local at = tonumber(string.match(head, '%.(%d+)$') or '0')
          if at > now_ms - min_age_ms then break end
        end
        local id = redis.call('LPOP', list)
        if not id then break end
        take(argv[q], id)
      end
    end
  end
  -- Fewer than asked: every queue without an age limit was emptied. Its wake-up tokens are
  -- stale now (each stands for a message taken); left there, each would cost an idle
  -- consumer a wake-up and an empty fetch.
  if #claims < n and dropped < max_dropped then
    for q = first_queue, #argv - 1, 2 do
      if argv[q + 1] == '0' then redis.call('DEL', key_wake(argv[q])) end
    end
  end
  -- What was set aside here waits for a consumer of its version: wake one (the longest
  -- idle, which is not this one: it is busy in this call).
  for queue in pairs(parked_in) do redis.call('LPUSH', key_wake(queue), 'parked') end
  return claims
end

-- End the running attempt that holds lease `token` (see finish.lua): 'ok' or 'stale'.
local function finish_attempt(rid, token, status, retention, fields)
  local head = read_head(rec_key(rid), 'lease')
  if head.status ~= 'IN_PROGRESS' or head.lease ~= token then return 'stale' end
  terminate(rid, status, retention, fields, head)
  return 'ok'
end
