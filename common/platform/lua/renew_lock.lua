-- Extend a lock only if this holder still owns it (atomic: a GET then a PEXPIRE could extend
-- a lock another holder took in between).
-- KEYS: 1 lock   ARGV: 1 holder token, 2 new time to live (ms)   Returns 1 if renewed, else 0.
local lock_key = KEYS[1]
local holder, ttl_ms = ARGV[1], ARGV[2]

if redis.call('GET', lock_key) == holder then return redis.call('PEXPIRE', lock_key, ttl_ms) end
return 0
