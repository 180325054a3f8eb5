-- Release a lock only if this holder still owns it.
-- KEYS: 1 lock   ARGV: 1 holder token   Returns 1 if released, else 0.
local lock_key = KEYS[1]
local holder = ARGV[1]

if redis.call('GET', lock_key) == holder then return redis.call('DEL', lock_key) end
return 0
