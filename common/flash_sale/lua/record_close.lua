-- A beacon draw's close (fairness v2, flash_sale/beacon_draw.py): fix the entries' digest and
-- the beacon round whose randomness will order them, once. The round announced at creation
-- stays when it is still at least MARGIN ahead of now; otherwise (the close was recorded late,
-- after an outage) it moves to the first round at least MOVE_AHEAD after now, so that the
-- randomness used never existed before the entries were fixed.
-- KEYS: 1 config, 2 counters, 3 lobby
-- ARGV: 1 the entries' digest (hex), 2 how many entries it covers
-- Returns {"recorded" | "already", digest, closed_at_ms, round, moved_from (0 = not moved)}
--       | {"not_closed"} | {"changed", lobby entries now}
local config_key, counters_key, lobby_key = KEYS[1], KEYS[2], KEYS[3]
local MARGIN_MS, MOVE_AHEAD_MS = 2000, 10000
local recorded = redis.call('HMGET', config_key, 'entries_digest', 'beacon_round', 'beacon_round_moved_from')
local closed_at = redis.call('HGET', counters_key, 'lobby_closed_at_ms')
if recorded[1] then
  return {'already', recorded[1], tonumber(closed_at or '0'), tonumber(recorded[2]),
          tonumber(recorded[3] or '0')}
end
if redis.call('HGET', counters_key, 'lobby_closed') ~= '1' then return {'not_closed'} end
-- The caller read the entries before this step: they must be the lobby's entries still.
local count = redis.call('ZCARD', lobby_key)
if count ~= tonumber(ARGV[2]) then return {'changed', count} end
local beacon = redis.call('HMGET', config_key, 'beacon_round', 'beacon_genesis_time', 'beacon_period_s')
local round, genesis, period = tonumber(beacon[1]), tonumber(beacon[2]), tonumber(beacon[3])
local now = now_ms()
local moved_from = 0
if (genesis + (round - 1) * period) * 1000 < now + MARGIN_MS then
  moved_from = round
  -- The first round whose time is >= now + MOVE_AHEAD_MS.
  local at_s = math.ceil((now + MOVE_AHEAD_MS) / 1000)
  round = math.max(1, math.ceil((at_s - genesis) / period) + 1)
  redis.call('HSET', config_key, 'beacon_round', round, 'beacon_round_moved_from', moved_from)
end
redis.call('HSET', config_key, 'entries_digest', ARGV[1])
return {'recorded', ARGV[1], tonumber(closed_at or '0'), round, moved_from}
