"""The Redis scripts. Each runs atomically, so any number of gateways share exact limits, and
each is timed by Redis's own clock, so the gateways' clocks need not agree.

Per key (all four share one hash tag, so this works on Redis Cluster too):
  KEYS[1] request log: list of admission times in ms, oldest first
  KEYS[2] token log: list of "time:permit", oldest first
  KEYS[3] reservations: hash permit -> tokens, plus "#sum" = their total
  KEYS[4] in flight: sorted set permit -> lease deadline in ms
Same semantics as memory.py, line for line; -1 means unlimited.
"""

ACQUIRE = """
-- ARGV: window ms, rpm, tpm, max_concurrent, tokens, permit id, lease ms, concurrency retry ms
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local slots, want, id = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local lease, busy_retry = tonumber(ARGV[7]), tonumber(ARGV[8])
local cutoff = now - window

local function stamp(entry)
  return tonumber(string.match(entry, '^%d+'))
end
local function permit(entry)
  return string.match(entry, ':(.*)$')
end

-- Entries leave the front of a log once older than the window: each is popped once.
local head = redis.call('LINDEX', KEYS[1], 0)
while head and stamp(head) <= cutoff do
  redis.call('LPOP', KEYS[1])
  head = redis.call('LINDEX', KEYS[1], 0)
end
head = redis.call('LINDEX', KEYS[2], 0)
while head and stamp(head) <= cutoff do
  redis.call('LPOP', KEYS[2])
  local tokens = redis.call('HGET', KEYS[3], permit(head))
  if tokens then
    redis.call('HDEL', KEYS[3], permit(head))
    redis.call('HINCRBY', KEYS[3], '#sum', -tonumber(tokens))
  end
  head = redis.call('LINDEX', KEYS[2], 0)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) -- leases of gateways that died
local requests = redis.call('LLEN', KEYS[1])
local used = tonumber(redis.call('HGET', KEYS[3], '#sum') or '0')
local in_flight = redis.call('ZCARD', KEYS[4])

-- 1 rpm, 2 tpm, 3 max_concurrent; the longest wait wins, the first on a tie
local tripped, wait = 0, 0
local function trip(code, ms)
  if tripped == 0 or ms > wait then
    tripped, wait = code, ms
  end
end
if slots >= 0 and in_flight >= slots then
  trip(3, busy_retry)
end
if rpm >= 0 and requests >= rpm then
  trip(1, stamp(redis.call('LINDEX', KEYS[1], requests - rpm)) + window - now)
end
if tpm >= 0 and used + want > tpm then
  local left, ms = used, 0
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    left = left - tonumber(redis.call('HGET', KEYS[3], permit(entry)) or '0')
    ms = stamp(entry) + window - now
    if left + want <= tpm then
      break
    end
  end
  trip(2, ms)
end

if tripped == 0 then
  local at = string.format('%d', now)
  if rpm >= 0 then
    redis.call('RPUSH', KEYS[1], at)
    redis.call('PEXPIRE', KEYS[1], window)
    requests = requests + 1
  end
  if tpm >= 0 then
    redis.call('RPUSH', KEYS[2], at .. ':' .. id)
    redis.call('HSET', KEYS[3], id, want)
    redis.call('HINCRBY', KEYS[3], '#sum', want)
    redis.call('PEXPIRE', KEYS[2], window)
    redis.call('PEXPIRE', KEYS[3], window)
    used = used + want
  end
  if slots >= 0 then
    redis.call('ZADD', KEYS[4], now + lease, id)
    redis.call('PEXPIRE', KEYS[4], lease)
    in_flight = in_flight + 1
  end
end

local function reset(key)
  local oldest = redis.call('LINDEX', key, 0)
  if oldest then
    return stamp(oldest) + window - now
  end
  return 0
end
return {tripped, wait, requests, used, in_flight, reset(KEYS[1]), reset(KEYS[2])}
"""

SETTLE = """
-- KEYS[1] reservations, KEYS[2] in flight; ARGV: permit id, actual tokens, 1 if it holds a slot
local id, actual = ARGV[1], tonumber(ARGV[2])
if actual >= 0 then
  local reserved = redis.call('HGET', KEYS[1], id)
  if reserved then -- absent once the reservation has left the window
    redis.call('HSET', KEYS[1], id, actual)
    redis.call('HINCRBY', KEYS[1], '#sum', actual - tonumber(reserved))
  end
end
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[2], id)
end
return 0
"""
