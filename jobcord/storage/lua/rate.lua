-- rate(ns, dq, bucket_key, rate_per_s, burst)
-- A token bucket: takes one token if there is one. Returns {1, '0'} when allowed, else
-- {0, seconds until a token is back}.
local key, rate, burst = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local b = redis.call('HMGET', key, 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'at', now_s)
redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
if allowed == 1 then return {1, '0'} end
return {0, string.format('%.3f', (1 - tokens) / rate)}
