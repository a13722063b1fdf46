"""The Lua scripts: each a compare-and-something that must not be split into round trips.

Every script touches only the keys of one slot, which share a hash tag, so they run on
Redis Cluster too. Numbers stay below 2**53 (generations are microseconds), which Lua's
doubles hold exactly; ``%d`` formats them without an exponent.
"""

from __future__ import annotations

__all__ = ["LOAD", "LOCK", "NEXT_GENERATION", "REJECT", "RENEW", "STORE", "UNLOCK"]

# Redis before 7 replicates scripts verbatim unless told otherwise, and refuses a write after
# TIME; 7 and Valkey replicate effects anyway (the call is then a no-op).
_EFFECTS = "if redis.replicate_commands then redis.replicate_commands() end\n"

# KEYS[2] generation; ARGV[n] its TTL in ms. Never below the server's clock in microseconds,
# so a Redis that restarted empty does not hand out generations a late writer already holds.
_NEXT = """
local g = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if g < now then
  g = now
  redis.call('SET', KEYS[2], string.format('%d', g))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
"""

#: KEYS: lock, generation, token. ARGV: owner, lease ms, generation TTL ms.
#: The generation (> 0) if the lock was taken; else minus the stored token's generation (0
#: if none), so that a waiter sees when the token it waits for has been stored. A lock with
#: more than two leases left, or no expiry, is no holder's of this fleet (holders set one lease
#: and renew it to one lease): someone with write access parked it. It is taken over at once,
#: and the answer is {generation}, so that the caller can say so; the fleet then converges on
#: this caller as on any holder.
LOCK = (
    _EFFECTS
    + """
local foreign = false
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local left = redis.call('PTTL', KEYS[1])
  if left >= 0 and left <= 2 * tonumber(ARGV[2]) then
    return -tonumber(redis.call('HGET', KEYS[3], 'gen') or '0')
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  foreign = true
end
"""
    + _NEXT
    + "if foreign then return {g} end\nreturn g\n"
)

#: KEYS: lock (unused), generation. ARGV: -, -, generation TTL ms. A generation without the
#: lock: for a caller that waited out its lock timeout and fetches anyway.
NEXT_GENERATION = _EFFECTS + _NEXT + "return g\n"

#: KEYS: lock. ARGV: owner. Compare-and-delete: never release a lock another owner now holds.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: KEYS: lock. ARGV: owner, lease ms. Extends the lease while the holder still owns it.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

#: KEYS: token, floor, floor's rejection. ARGV: generation, rp, tag, blob, TTL ms.
#: Compare-and-set: 1 stored; 0 a newer generation is there; -1 fetched before a rejection.
#: Below the floor, a replacement of the token whose rejection raised the floor last is taken:
#: it was requested after that rejection, so late 401s for the same token, which each find a
#: replacement in flight, do not each cost the fleet another token request.
STORE = """
local g = tonumber(ARGV[1])
local current = redis.call('HGET', KEYS[1], 'gen')
if current and tonumber(current) >= g then return 0 end
local floor = redis.call('GET', KEYS[2])
if floor and tonumber(floor) >= g and redis.call('GET', KEYS[3]) ~= floor .. ':' .. ARGV[2] then
  return -1
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'rp', ARGV[2], 'tag', ARGV[3], 'blob', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

#: KEYS: token. The hash and its TTL in ms, in one atomic read.
LOAD = """
return {redis.call('HGETALL', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""

#: KEYS: token, floor, generation, floor's rejection. ARGV: tag of the rejected token, the ``rp``
#: its replacements carry, TTL ms of floor and generation. Compare-and-invalidate, as the provider
#: does in memory: the entry stays only if it is a replacement of the rejected token (not merely
#: one fetched after some rejection: a second revocation may have hit that). Then every generation
#: handed out so far is put below the floor, so that a fetch that started before the rejection is
#: not stored, whether or not an entry was there: with none (it expired, or Redis restarted empty),
#: the floor used not to rise. The generation is first moved up to the server's clock, which covers
#: generations handed out before a restart that lost the counter. The floor's rejection,
#: ``floor:rp``, says which rejected token raised it: a later 401 for that same token says nothing
#: new (whatever was fetched since was requested after the token died) and leaves the floor where
#: it is, and STORE takes a replacement of that token below it. Answers {1 if the entry went else
#: 0, the floor}: a caller keeps the floor, since a restart loses it.
REJECT = (
    _EFFECTS
    + """
local removed = 0
local entry = redis.call('HMGET', KEYS[1], 'tag', 'rp')
if entry[1] and (entry[1] == ARGV[1] or entry[2] ~= ARGV[2]) then
  redis.call('DEL', KEYS[1])
  removed = 1
end
local floor = redis.call('GET', KEYS[2])
if floor and redis.call('GET', KEYS[4]) == floor .. ':' .. ARGV[2] then
  return {removed, tonumber(floor)}
end
local g = tonumber(redis.call('GET', KEYS[3]) or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if g < now then
  g = now
  redis.call('SET', KEYS[3], string.format('%d', g), 'PX', ARGV[3])
end
if not floor or tonumber(floor) < g then
  floor = string.format('%d', g)
  redis.call('SET', KEYS[2], floor, 'PX', ARGV[3])
end
redis.call('SET', KEYS[4], floor .. ':' .. ARGV[2], 'PX', ARGV[3])
return {removed, tonumber(floor)}
"""
)
