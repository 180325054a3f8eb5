-- After a sale has ended, take its unreserved units out of the sale so that they can go back
-- to the product's catalogue stock. Safe to repeat: units that come free later (a reservation
-- that expires after the end) are returned by a later call. The sale's `stock_total` shrinks
-- by what it gives back, so available + reserved + sold == stock_total still holds.
-- KEYS: 1 config, 2 counters
-- Returns {units taken now, total returned so far}; {-1, 0} while the sale has not ended or
-- shoppers admitted before the end are still waiting for their turn.
local config_key, counters_key = KEYS[1], KEYS[2]
local now = now_ms()
local ends_at = tonumber(redis.call('HGET', config_key, 'ends_at_ms') or '0')
if ends_at == 0 or now < ends_at then return {-1, 0} end
if tonumber(redis.call('HGET', counters_key, 'queued') or '0') > 0 then return {-1, 0} end
local available = tonumber(redis.call('HGET', counters_key, 'available') or '0')
if available > 0 then
  redis.call('HINCRBY', counters_key, 'available', -available)
  redis.call('HINCRBY', counters_key, 'returned', available)
  redis.call('HINCRBY', config_key, 'stock_total', -available)
end
return {available, tonumber(redis.call('HGET', counters_key, 'returned') or '0')}
