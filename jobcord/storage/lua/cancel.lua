-- cancel(ns, dq, rid, retention_s)
-- A queued request is CANCELED at once (its message is dropped when fetched); a running one
-- is flagged and its worker told on the cancels channel. Returns {outcome, status}.
local rid, retention = ARGV[3], ARGV[4]
local rk = rec_key(rid)
local head = read_head(rk)
if not head.status then return {'missing', ''} end
if head.status == 'QUEUED' then
  terminate(rid, 'CANCELED', retention,
    {'error', cjson.encode({type = 'Canceled', message = 'canceled while queued'})}, head)
  return {'canceled', 'CANCELED'}
end
if head.status == 'IN_PROGRESS' then
  redis.call('HSET', rk, 'cancel_requested', '1')
  redis.call('PUBLISH', key_cancels(), rid)
  cancel_tree(rid, retention)  -- its children stop now, not when it is killed
  return {'cancel_requested', 'IN_PROGRESS'}
end
return {'terminal', head.status}
