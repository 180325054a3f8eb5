-- Admit one shopper into a sale's waiting room, in one round trip.
-- Between lobby_opens_at and starts_at (a sale with a lobby) the ticket is a `lobby` ticket:
-- no place and no stream entry yet (flash_sale/lobby.py places the lobby at the start).
-- After the start, while the lobby is still being placed, a new ticket waits in the
-- after-lobby list instead of the stream, so no decider can take it before the lobby.
-- KEYS: 1 config, 2 counters, 3 stream, 4 live, 5 latest, 6 held, 7 kick, 8 new ticket,
--       9 the shopper's admission rate (GCRA), 10 drain lock, 11 lobby, 12 after-lobby
-- ARGV: 1 ticket_id, 2 user_id, 3 quantity, 4 kick debounce ms, 5 sale_id,
--       6 ms between admissions at the limit's rate, 7 burst allowance ms (0 = no limit),
--       8 "1" when the shopper's email is verified (the sale's `verified_email` entry rule),
--       9 when the admission's proof-of-work solution expires (ms; "" without a solution the
--       API verified), 13 (KEYS) that solution's once-key, only with one
-- Idempotent on ARGV[1]: the same call again (its first reply lost on the way back and the call
-- resent, by lua_scripts.call_hot or a cluster client's retry) changes nothing more and answers
-- {"replayed", ticket_id} when the first issued the ticket, else as the first did (the rate
-- step is taken once per ticket id; a rejection is decided again).
-- Returns {"issued", ticket_id, kick(0|1), seq ("" in the lobby), created_at_ms, served, rate,
--         status, units_before, available, reserved, served_units, lobby_units}
--       (all the answer needs, so an admission is this one call) | {"replayed", ticket_id}
--       | {"existing", ticket_id} | {"no_sale"} | {"email_unverified"}
--       | {"challenge_required", "missing"|"used"}
--       | {"not_open", "scheduled"|"ended"} | {"sold_out"} | {"over_limit", limit}
--       | {"limit_reached", held} | {"rate_limited", retry_after_ms}
--       | {"queue_full", cap} (the sale's queue_cap: that many live tickets already)
local config_key, counters_key, stream_key, live_key, latest_key, held_key, kick_key,
  ticket_key, rate_key, drain_lock_key, lobby_key, after_lobby_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12]
local ticket_id, user, quantity, kick_debounce_ms, sale_id, interval, allowance, verified =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]),
  tonumber(ARGV[7]), ARGV[8]
local now = now_ms()

-- This admission ran already and issued its ticket: the first reply was lost.
if redis.call('EXISTS', ticket_key) == 1 then return {'replayed', ticket_id} end

-- Rate limit first, in this same round trip (GCRA: one key holding the theoretical arrival
-- time and the ticket id of the admission that set it): a client hammering admission is
-- refused before anything else is touched. A replay of the admission that set it was counted.
if interval > 0 then
  local last_tat, counted = string.match(redis.call('GET', rate_key) or '0', '^(%d+) ?(.*)$')
  if counted ~= ticket_id then
    local tat = math.max(tonumber(last_tat or '0'), now)
    if tat - now > allowance then
      redis.call('HINCRBY', counters_key, 'rate_limited', 1)  -- for the operator's report
      return {'rate_limited', tat - now - allowance}
    end
    redis.call('SET', rate_key, string.format('%d %s', tat + interval, ticket_id),
      'PX', tat + interval - now)
  end
end

local config = redis.call('HMGET', config_key, 'starts_at_ms', 'ends_at_ms', 'per_user_limit',
  'expire_at_s', 'lobby_opens_at_ms', 'verified_email', 'queue_cap')
if not config[1] then return {'no_sale'} end
if config[6] == '1' and verified ~= '1' then return {'email_unverified'} end
local lobby_opens = tonumber(config[5] or '')
-- Before starts_at by this server's clock, unless the lobby is closed already: after a failover
-- to a replica whose clock is behind, a ticket must not join a lobby whose seed is public.
local in_lobby = now < tonumber(config[1])
  and not (lobby_opens and redis.call('HGET', counters_key, 'lobby_closed'))
if in_lobby and (not lobby_opens or now < lobby_opens) then return {'not_open', 'scheduled'} end
if now >= tonumber(config[2]) then return {'not_open', 'ended'} end

-- The sale's proof-of-work (entry.challenge): the API checked the solution's hash, signature
-- and expiry; here it is spent, by whoever comes first. A resend of this very call keeps it.
if redis.call('HGET', config_key, 'challenge') == '1' then
  local solution_key, solution_expires = KEYS[13], tonumber(ARGV[9] or '')
  -- Refusals are counted per sale (counters `challenges_refused`) for the operator's report.
  if not solution_key or not solution_expires then
    redis.call('HINCRBY', counters_key, 'challenges_refused', 1)
    return {'challenge_required', 'missing'}
  end
  if not redis.call('SET', solution_key, ticket_id, 'NX', 'PX', math.max(solution_expires - now, 60000))
      and redis.call('GET', solution_key) ~= ticket_id then
    redis.call('HINCRBY', counters_key, 'challenges_refused', 1)
    return {'challenge_required', 'used'}
  end
end

local live = redis.call('HGET', live_key, user)
if live then return {'existing', live} end

local limit = tonumber(config[3])
if quantity > limit then return {'over_limit', limit} end
local held = tonumber(redis.call('HGET', held_key, user) or '0')
if held + quantity > limit then return {'limit_reached', held} end

local stock = redis.call('HMGET', counters_key, 'available', 'reserved', 'served', 'rate',
  'served_units', 'lobby_units')
if tonumber(stock[1]) <= 0 and tonumber(stock[2]) <= 0 then return {'sold_out'} end
-- The operator's cap on live tickets (flash_sale/controls.py): the live hash holds one entry per
-- live ticket, so its length is the count, read in O(1) in this same step.
local cap = tonumber(config[7] or '')
if cap and redis.call('HLEN', live_key) >= cap then return {'queue_full', cap} end

if in_lobby then
  -- Nothing here waits for the opening: no place, no stream entry, no worker nudged.
  local stamp = tostring(now)
  redis.call('HINCRBY', counters_key, 'lobby', 1)
  redis.call('HINCRBY', counters_key, 'lobby_size', 1)
  local lobby_units = redis.call('HINCRBY', counters_key, 'lobby_units', quantity)
  redis.call('HSET', ticket_key, 'id', ticket_id, 'sale_id', sale_id, 'user_id', user,
    'quantity', quantity, 'status', 'lobby', 'created_at_ms', stamp, 'updated_at_ms', stamp)
  redis.call('EXPIREAT', ticket_key, tonumber(config[4]))
  redis.call('ZADD', lobby_key, 0, ticket_id)
  redis.call('HSET', live_key, user, ticket_id)
  redis.call('HSET', latest_key, user, ticket_id)
  local reply = {'issued', ticket_id, 0, '', stamp, stock[3] or '0', stock[4] or '0', 'lobby', '',
    stock[1], stock[2], stock[5] or '0', lobby_units}
  -- A draw sale's entry (flash_sale/draw.py) needs its card held (billing/holds.py): the
  -- amount, price x quantity, is in the reply too (draw: amount_cents, currency at the end).
  local draw = redis.call('HMGET', config_key, 'mode', 'price_cents', 'currency')
  if draw[1] == 'draw' then
    local amount = tonumber(draw[2]) * quantity
    redis.call('HSET', ticket_key, 'hold_status', 'required', 'hold_amount_cents', amount,
      'hold_currency', draw[3])
    table.insert(reply, amount)
    table.insert(reply, draw[3])
  end
  return reply
end
if lobby_opens then close_lobby(counters_key) end

local seq = redis.call('HINCRBY', counters_key, 'issued', 1)
-- units_before: units asked for by every ticket ahead (a running total), for units_ahead.
local units_before = redis.call('HINCRBY', counters_key, 'units_issued', quantity) - quantity
redis.call('HINCRBY', counters_key, 'queued', 1)
local stamp = tostring(now)
redis.call('HSET', ticket_key, 'id', ticket_id, 'sale_id', sale_id, 'user_id', user,
  'quantity', quantity, 'seq', seq, 'units_before', units_before, 'status', 'queued',
  'created_at_ms', stamp, 'updated_at_ms', stamp)
redis.call('EXPIREAT', ticket_key, tonumber(config[4]))
if lobby_opens and redis.call('HGET', counters_key, 'lobby_done') ~= '1' then
  redis.call('RPUSH', after_lobby_key, ticket_id)
  redis.call('EXPIREAT', after_lobby_key, tonumber(config[4]))
else
  redis.call('XADD', stream_key, '*', 'ticket_id', ticket_id, 'seq', seq)
end
redis.call('HSET', live_key, user, ticket_id)
redis.call('HSET', latest_key, user, ticket_id)
-- A decider already draining this sale will read the entry: nudge workers only when none is.
-- (A decider re-checks for undecided tickets after letting go of its lock.)
local kick = false
if redis.call('EXISTS', drain_lock_key) == 0 then
  kick = redis.call('SET', kick_key, '1', 'NX', 'PX', kick_debounce_ms)
end
return {'issued', ticket_id, kick and 1 or 0, seq, stamp, stock[3] or '0', stock[4] or '0',
  'queued', units_before, stock[1], stock[2], stock[5] or '0', stock[6] or '0'}
