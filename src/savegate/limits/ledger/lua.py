"""The Redis scripts of the ledger. Each runs atomically; leases are timed by Redis's clock.

Per key and month (one hash tag per key, so this works on Redis Cluster too):
  KEYS[1] month: hash gen, tokens, spend, held_tokens, held_cost (what KEYS[3] holds), and
          while loading: loading (deadline ms), loader
  KEYS[2] hold leases: sorted set hold id -> deadline ms
  KEYS[3] holds: hash hold id -> "tokens cost"; a settled hold stays a while as "0 0", so
          that a process registering its holds again cannot bring it back
  KEYS[4] request ids settled while loading: set
Floats go out as strings (%.17g): Redis would cut a Lua number to an integer.
"""

# What the scripts share: the clock, holds and the month's state.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(x) return string.format('%.17g', x) end
local function keep(ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
local function hold(id, tokens, cost, lease, ttl)
  if redis.call('HSETNX', KEYS[3], id, tokens .. ' ' .. cost) == 1 then
    redis.call('HINCRBY', KEYS[1], 'held_tokens', tokens)
    redis.call('HINCRBYFLOAT', KEYS[1], 'held_cost', cost)
    redis.call('ZADD', KEYS[2], now + lease, id)
  end
  keep(ttl)
end
local function release(id, tombstone)  -- tombstone: ms a settled hold is remembered, or nil
  local held = redis.call('HGET', KEYS[3], id)
  if held then
    local tokens, cost = string.match(held, '^(%S+) (%S+)$')
    redis.call('HINCRBY', KEYS[1], 'held_tokens', -tonumber(tokens))
    redis.call('HINCRBYFLOAT', KEYS[1], 'held_cost', -tonumber(cost))
  end
  if tombstone then
    redis.call('HSET', KEYS[3], id, '0 0')
    redis.call('ZADD', KEYS[2], now + tombstone, id)
  else
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
local function holds(first, lease, ttl)  -- ARGV[first..] = id, tokens, cost, ...
  for i = first, #ARGV, 3 do
    hold(ARGV[i], ARGV[i + 1], ARGV[i + 2], lease, ttl)
  end
end
local function loading()
  return tonumber(redis.call('HGET', KEYS[1], 'loading') or '0')
end
"""

# -> {'absent'} | {'loading'} | {'stale', gen} | {'ok' | 'over', which, tokens, spend, held
# tokens, held cost}. ARGV: gen, hold id, tokens, cost, quota, budget (-1: none), lease ms, ttl s
RESERVE = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'absent'} end
local deadline = loading()
if deadline > 0 then
  if deadline < now then return {'absent'} end  -- its loader died: claim it again
  return {'loading'}
end
local gen = redis.call('HGET', KEYS[1], 'gen')
if gen ~= ARGV[1] then return {'stale', gen} end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  release(id, nil)  -- the lease of a process that died, or a settled hold remembered
end
local held_tokens = tonumber(redis.call('HGET', KEYS[1], 'held_tokens') or '0')
local held_cost = tonumber(redis.call('HGET', KEYS[1], 'held_cost') or '0')
local used = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local spend = tonumber(redis.call('HGET', KEYS[1], 'spend'))
local want, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local quota, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local which = ''
if quota >= 0 and used + held_tokens + want > quota then
  which = 'tokens'
elseif budget >= 0 and spend + held_cost + cost > budget then
  which = 'usd'
end
local state = which == '' and 'ok' or 'over'
if state == 'ok' then hold(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[7]), tonumber(ARGV[8])) end
return {state, which, num(used), num(spend), num(held_tokens), num(held_cost)}
"""
)

# -> {'absent'} | {'stale', gen} | {'ok', tokens before, spend before, tokens, spend, partial}
# ARGV: gen, hold id, tokens, cost, request id, tombstone ms, ttl s
SETTLE = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'absent'} end
local gen = redis.call('HGET', KEYS[1], 'gen')
if gen ~= ARGV[1] then return {'stale', gen} end
release(ARGV[2], tonumber(ARGV[6]))
keep(tonumber(ARGV[7]))
local used = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local spend = tonumber(redis.call('HGET', KEYS[1], 'spend'))
local after_used = redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[3])
local after_spend = redis.call('HINCRBYFLOAT', KEYS[1], 'spend', ARGV[4])
local partial = 0
if loading() > 0 then
  redis.call('SADD', KEYS[4], ARGV[5])
  partial = 1
end
return {'ok', num(used), num(spend), num(after_used), after_spend, partial}
"""
)

# -> {1 | 0 (someone else loads or loaded it), gen}
# ARGV: gen, loader, claim ms, lease ms, ttl s, holds (id, tokens, cost)...
CLAIM = (
    _COMMON
    + """
local claimed = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'tokens', 0, 'spend', 0)
  claimed = 1
elseif loading() > 0 and loading() < now then
  claimed = 1  -- its loader died; what was settled since stays, and is left out again
end
if claimed == 1 then
  redis.call('HSET', KEYS[1], 'loading', now + tonumber(ARGV[3]), 'loader', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
holds(6, tonumber(ARGV[4]), tonumber(ARGV[5]))
return {claimed, redis.call('HGET', KEYS[1], 'gen')}
"""
)

# -> 'done' | 'lost' (another process took the loading over) | 'again' (more requests
# settled meanwhile: load again). ARGV: loader, request ids seen, tokens, spend
LOADED = """
if redis.call('HGET', KEYS[1], 'loader') ~= ARGV[1] then return 'lost' end
if redis.call('SCARD', KEYS[4]) ~= tonumber(ARGV[2]) then return 'again' end
redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'spend', ARGV[4])
redis.call('HDEL', KEYS[1], 'loading', 'loader')
redis.call('DEL', KEYS[4])
return 'done'
"""

# -> {'absent'} | {'ok', gen}. ARGV: lease ms, ttl s, holds (id, tokens, cost)...
ADOPT = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'absent'} end
holds(3, tonumber(ARGV[1]), tonumber(ARGV[2]))
return {'ok', redis.call('HGET', KEYS[1], 'gen')}
"""
)
