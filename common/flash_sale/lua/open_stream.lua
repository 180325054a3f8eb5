-- Take a slot for a ticket's event stream, under the caps per ticket and per client address,
-- counted across every API process (common/flash_sale/stream_slots.py). A slot is a lease:
-- the process holding the stream renews it (renew_streams.lua), so a killed process's slots
-- end with their lease instead of counting for ever.
-- KEYS: 1 the ticket's open streams, 2 the client address's open streams (sorted sets: stream
--       id -> when its lease ends, ms on Redis's clock)
-- ARGV: 1 stream id, 2 lease (ms), 3 cap per ticket, 4 cap per address (0: no cap, not counted)
-- Returns {"ok"} | {"ticket" or "address", ms until the oldest lease of that set ends}
local ticket_key, address_key = KEYS[1], KEYS[2]
local stream_id, lease_ms = ARGV[1], tonumber(ARGV[2])
local per_ticket, per_address = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()

local function refused(key, cap, name)
  if cap <= 0 then return nil end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) < cap then return nil end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {name, math.max(0, tonumber(oldest[2]) - now)}
end

local full = refused(ticket_key, per_ticket, 'ticket') or refused(address_key, per_address, 'address')
if full then return full end
for key, cap in pairs({[ticket_key] = per_ticket, [address_key] = per_address}) do
  if cap > 0 then
    redis.call('ZADD', key, now + lease_ms, stream_id)
    redis.call('PEXPIRE', key, lease_ms)
  end
end
return {'ok'}
