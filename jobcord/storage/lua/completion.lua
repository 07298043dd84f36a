-- completion(ns, dq, op, rid, ...): a dramatiq actor's run of a request's completion message,
-- claimed on the request's record so that the actor's logic runs once per finished attempt
-- (a message sent twice, or redelivered while a live worker runs it, is not run again).
--   claim(rid, attempt, token, lease_s) -> 'run' (claimed for lease_s) | 'done' (already
--                                          ran for this attempt) | 'busy' (another live
--                                          claim) | 'missing' (no record)
--   renew(rid, token, lease_s)          -> 1 while the claim is this token's, else 0
--   done(rid, attempt, token)           -> 1: the run succeeded (the claim ends)
--   release(rid, token)                 -> 1: the run failed; its retry may claim again
local op, rid = ARGV[3], ARGV[4]
local rk = rec_key(rid)
if redis.call('EXISTS', rk) == 0 then return 'missing' end
local held = redis.call('HMGET', rk, 'on_complete_claim', 'on_complete_claim_until',
  'on_complete_done_attempt')
local token, held_until, done = held[1], tonumber(held[2] or 0), tonumber(held[3] or 0)
if op == 'claim' then
  if done >= tonumber(ARGV[5]) then return 'done' end
  if token and token ~= ARGV[6] and held_until > now then return 'busy' end
  redis.call('HSET', rk, 'on_complete_claim', ARGV[6], 'on_complete_claim_until',
    now + tonumber(ARGV[7]))
  return 'run'
elseif op == 'renew' then
  if token ~= ARGV[5] then return 0 end
  redis.call('HSET', rk, 'on_complete_claim_until', now + tonumber(ARGV[6]))
  return 1
elseif op == 'done' then
  redis.call('HSET', rk, 'on_complete_done_attempt', math.max(done, tonumber(ARGV[5])),
    'on_complete_processed_at', now_s)
  if token == ARGV[6] then redis.call('HDEL', rk, 'on_complete_claim', 'on_complete_claim_until') end
  return 1
elseif op == 'release' then
  if token == ARGV[5] then redis.call('HDEL', rk, 'on_complete_claim', 'on_complete_claim_until') end
  return 1
end
return redis.error_reply('completion: unknown op ' .. tostring(op))
