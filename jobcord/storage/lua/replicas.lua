-- replicas(ns, dq, op, app, ttl_s, limit, member, ...)
-- The app's warm replicas on every host, one member each (worker id and place), scored by
-- when its lease ends; the autoscalers of all hosts count and claim through this one script,
-- so two hosts never both start the replica past an app's limit.
--   acquire: claim `member` if fewer than `limit` live (a member already there is renewed)
--   release: drop `member`
--   renew:   extend the leases of the members given; one that expired meanwhile (Redis
--            was away longer than the TTL) is counted again: it still runs
--   count:   how many are live
-- Returns {outcome, live count}: outcome 'ok', or 'full' (acquire).
local op, app, ttl, limit = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local key = key_replicas(app)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local live = redis.call('ZCARD', key)
local outcome = 'ok'
if op == 'acquire' then
  local member = ARGV[7]
  if redis.call('ZSCORE', key, member) then
    redis.call('ZADD', key, now + ttl, member)
  elseif live >= limit then
    outcome = 'full'
  else
    redis.call('ZADD', key, now + ttl, member)
    live = live + 1
  end
elseif op == 'release' then
  live = live - redis.call('ZREM', key, ARGV[7])
elseif op == 'renew' then
  for i = 7, #ARGV do
    live = live + redis.call('ZADD', key, now + ttl, ARGV[i])
  end
end
-- An app no host serves any more leaves nothing behind.
if live > 0 then redis.call('EXPIRE', key, math.ceil(ttl) + 60) end
return {outcome, live}
