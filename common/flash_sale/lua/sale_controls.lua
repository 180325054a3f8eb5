-- Change a sale's operator controls (flash_sale/controls.py) in its Redis config, and what
-- shoppers see of them, in one step: every process reads the config from here.
-- The counters' `rate` is the rate shoppers' ETAs use: -1 while the sale is paused (tickets say
-- `paused`, no ETA; the rate before is kept in `rate_before_pause`), else at most the pace.
-- One message on the sale's events channel tells open event streams at once.
-- KEYS: 1 config, 2 counters
-- ARGV: field, value, field, value, ... (config fields; "" removes the field)
-- Returns the rate shown now (a string).
local config_key, counters_key = KEYS[1], KEYS[2]
if redis.call('EXISTS', config_key) == 0 then return false end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', config_key, ARGV[i])
  else
    redis.call('HSET', config_key, ARGV[i], ARGV[i + 1])
  end
end
local controls = redis.call('HMGET', config_key, 'paused', 'outflow_per_second')
local pace = tonumber(controls[2] or '')
local progress = redis.call('HMGET', counters_key, 'rate', 'rate_before_pause', 'served')
local rate = tonumber(progress[1] or '0')
if controls[1] == '1' then
  if rate >= 0 then redis.call('HSET', counters_key, 'rate_before_pause', tostring(rate)) end
  rate = -1
else
  if rate < 0 then rate = tonumber(progress[2] or '0') end
  if pace and (rate <= 0 or rate > pace) then rate = pace end
end
redis.call('HSET', counters_key, 'rate', tostring(rate))
publish_ticket_events(counters_key, (progress[3] or '0') .. ' ' .. now_ms() .. ' ' .. tostring(rate), {})
return tostring(rate)
