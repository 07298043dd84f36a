-- beat(ns, dq, kind, id, ttl_s, report): (re)write the report of one live process, a JSON
-- object, to expire ttl_s later, and index its id. kind: 'health' (a process's loop health,
-- storage/health.py) or 'consumer' (a consumer's registration, storage/registry.py).
-- The report is stamped with `seen_at`: now on Redis's clock, which readers compare with
-- Redis's TIME, never with their own host's clock (hosts' clocks disagree).
local kind, id, ttl_s, report = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if string.sub(report, 1, 1) ~= '{' or string.sub(report, -1) ~= '}' then
  return redis.error_reply('beat: the report must be a JSON object')
end
local key, index
if kind == 'health' then
  key, index = key_health(id), key_health_index()
elseif kind == 'consumer' then
  key, index = key_consumer(id), key_consumers()
else
  return redis.error_reply('beat: unknown kind ' .. kind)
end
-- Last, so that it wins over a `seen_at` the report may carry (JSON readers keep the last).
local stamp = '"seen_at": ' .. now_s .. '}'
if string.match(report, '^{%s*}$') then
  report = '{' .. stamp
else
  report = string.sub(report, 1, -2) .. ', ' .. stamp
end
redis.call('SET', key, report, 'PX', math.max(1, math.floor(ttl_s * 1000)))
redis.call('SADD', index, id)
return 1
