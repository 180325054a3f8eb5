-- Renew the leases of event streams still open (each API process's feed, every renewal period;
-- common/flash_sale/stream_slots.py).
-- KEYS: the sets of open streams (open_stream.lua), one per lease to renew
-- ARGV: 1 lease (ms), then the stream id of each key, in the same order
-- Returns the number of leases renewed.
local lease_ms = tonumber(ARGV[1])
local ends = now_ms() + lease_ms
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ends, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease_ms)
end
return #KEYS
