-- attempt(ns, dq, rid, token, op, ...)
-- A write by the running attempt that holds lease `token`; refused ('stale') for any other,
-- so a paused or zombie attempt can never change what callers read.
--   op 'fields', field, value, ...    : set record fields (e.g. device)
--   op 'progress', fraction, message  : progress on the record and an IN_PROGRESS event
--   op 'chunk', data                  : one streamed item, in order
local rid, token, op = ARGV[3], ARGV[4], ARGV[5]
local rk = rec_key(rid)
local cur = redis.call('HMGET', rk, 'status', 'lease', 'attempt', 'streamed')
if cur[1] ~= 'IN_PROGRESS' or cur[2] ~= token then return 'stale' end
if op == 'fields' then
  local fields = {}
  for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
  if #fields > 0 then redis.call('HSET', rk, unpack(fields)) end
elseif op == 'progress' then
  redis.call('HSET', rk, 'progress', ARGV[6], 'progress_message', ARGV[7])
  redis.call('XADD', ev_key(rid), 'MAXLEN', '~', 1000, '*', 'status', 'IN_PROGRESS',
    'at', now_s, 'attempt', cur[3], 'progress', ARGV[6], 'progress_message', ARGV[7])
elseif op == 'chunk' then
  -- Marked on the record, so that the finish knows the chunks expire with it.
  if not cur[4] then redis.call('HSET', rk, 'streamed', '1') end
  redis.call('XADD', key_chunks(rid), '*', 'data', ARGV[6])
else
  return redis.error_reply('unknown attempt op ' .. op)
end
return 'ok'
