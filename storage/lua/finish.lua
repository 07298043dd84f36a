-- finish(ns, dq, rid, token, status, retention_s, field, value, ...)
-- Ends the running attempt that holds lease `token`. Returns 'ok' or 'stale'.
local rid, token, status, retention = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cur = redis.call('HMGET', rec_key(rid), 'status', 'lease', 'attempt')
if cur[1] ~= 'IN_PROGRESS' or cur[2] ~= token then return 'stale' end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
terminate(rid, status, cur[3], retention, fields)
return 'ok'
