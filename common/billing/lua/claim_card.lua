-- Claim a card for one account in a sale (the sale's `one_card` entry rule), before its
-- payment is confirmed. The claim belongs to the ticket that made it: release.lua gives it
-- back when that ticket ends without buying, settle.lua takes it again for a late payment.
-- KEYS: 1 card claims (hash fingerprint -> "<ticket_id> <user_id>"), 2 ticket, 3 config
-- ARGV: 1 card fingerprint, 2 ticket_id, 3 user_id
-- Returns {"claimed"} (this account may pay with it) | {"off"} (the sale's config has no
--       `one_card` "1": a card may pay for several accounts; it is only recorded)
--       | {"taken"} (another account's ticket holds it) | {"ended", status} (the ticket holds no reservation any more: nothing to claim for)
local claims_key, ticket_key, config_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, ticket_id, user = ARGV[1], ARGV[2], ARGV[3]

local ticket = redis.call('HMGET', ticket_key, 'status', 'user_id', 'card_fingerprint')
local status, previous = ticket[1], ticket[3]
if not status or ticket[2] ~= user then return {'ended', 'missing'} end
-- Checked here, atomically with release.lua: a claim never outlives its ticket's reservation.
-- A draw entry (`lobby` with a hold, billing/holds.py) claims its card before the hold too;
-- withdraw_entry.lua and the draw's scripts give it back.
local holding = status == 'lobby' and redis.call('HEXISTS', ticket_key, 'hold_status') == 1
if status ~= 'reserving' and status ~= 'reserved' and not holding then return {'ended', status} end
local config = redis.call('HMGET', config_key, 'one_card', 'expire_at_s')
local mine = ticket_id .. ' ' .. user
if config[1] == '1' then
  local holder = redis.call('HGET', claims_key, fingerprint)
  if holder and holder ~= mine then
    if string.match(holder, ' (.*)$') ~= user then return {'taken'} end
    -- The same account (its next ticket after one it bought): the claim stays where it is.
  elseif not holder then
    redis.call('HSET', claims_key, fingerprint, mine)
    if config[2] then redis.call('EXPIREAT', claims_key, tonumber(config[2])) end
  end
  -- Another card tried on this ticket before (declined): this ticket lets go of it.
  if previous and previous ~= fingerprint and redis.call('HGET', claims_key, previous) == mine then
    redis.call('HDEL', claims_key, previous)
  end
end
redis.call('HSET', ticket_key, 'card_fingerprint', fingerprint)
return {config[1] == '1' and 'claimed' or 'off'}
