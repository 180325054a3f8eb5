-- Load a sale into Redis once: its configuration and its stock. Loading again changes
-- nothing, so a restart or a second loader cannot reset stock that is already moving.
-- Only keys of this sale's slot: the caller adds the sale to the global sales index itself.
-- KEYS: 1 config, 2 counters
-- ARGV: 1 sale_id, 2 stock, 3 starts_at_ms, 4 ends_at_ms, 5 per_user_limit, 6 ttl_s,
--       7 price_cents, 8 currency, 9 product_id, 10 expire_at_s (keys are kept until then),
--       11 presence_timeout_s (0 = off), 12 lobby_opens_at_ms ("" = no lobby),
--       13 the fairness seed, hex (secret until the start: flash_sale/lobby.py),
--       14 "1" when admission needs a verified email (the sale's entry requirements),
--       15 "1" when admission needs a solved challenge (admit.lua), 16 "1" when a card pays
--       for one account only (billing/lua/claim_card.lua)
-- Returns 1 when loaded now, 0 when it already was.
local config_key, counters_key = KEYS[1], KEYS[2]
if redis.call('EXISTS', counters_key) == 1 then return 0 end
redis.call('HSET', config_key, 'sale_id', ARGV[1], 'stock_total', ARGV[2], 'starts_at_ms', ARGV[3],
  'ends_at_ms', ARGV[4], 'per_user_limit', ARGV[5], 'ttl_s', ARGV[6], 'price_cents', ARGV[7],
  'currency', ARGV[8], 'product_id', ARGV[9], 'expire_at_s', ARGV[10],
  'presence_timeout_s', ARGV[11] or '0')
if (ARGV[12] or '') ~= '' then redis.call('HSET', config_key, 'lobby_opens_at_ms', ARGV[12]) end
if (ARGV[13] or '') ~= '' then redis.call('HSET', config_key, 'seed', ARGV[13]) end
if ARGV[14] == '1' then redis.call('HSET', config_key, 'verified_email', '1') end
if ARGV[15] == '1' then redis.call('HSET', config_key, 'challenge', '1') end
if ARGV[16] == '1' then redis.call('HSET', config_key, 'one_card', '1') end
redis.call('HSET', counters_key, 'available', ARGV[2], 'reserved', 0, 'sold', 0, 'issued', 0,
  'served', 0, 'queued', 0, 'sold_out', 0, 'expired', 0, 'cancelled', 0, 'payment_failed', 0,
  'paid', 0, 'returned', 0, 'abandoned', 0)
return 1
