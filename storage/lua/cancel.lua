-- cancel(ns, dq, rid, retention_s)
-- A queued request is CANCELED at once (its message is skipped when fetched); a running one
-- is flagged and its worker told on the cancels channel. Returns {outcome, status}.
local rid, retention = ARGV[3], ARGV[4]
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'attempt')
if not cur[1] then return {'missing', ''} end
if cur[1] == 'QUEUED' then
  terminate(rid, 'CANCELED', cur[2], retention,
    {'error', cjson.encode({type = 'Canceled', message = 'canceled while queued'})})
  return {'canceled', 'CANCELED'}
end
if cur[1] == 'IN_PROGRESS' then
  redis.call('HSET', rk, 'cancel_requested', '1')
  redis.call('PUBLISH', key_cancels(), rid)
  cancel_tree(rid, retention)  -- its children stop now, not when it is killed
  return {'cancel_requested', 'IN_PROGRESS'}
end
return {'terminal', cur[1]}
