-- Note the owners of waiting tickets as present now, by this server's clock: reserve_batch.lua
-- compares the stamps with the same clock (an API host's clock ahead would keep an absent
-- shopper present for the skew, one behind would take a present shopper for absent).
-- KEYS: 1 the sale's presence hash
-- ARGV: 1 seconds the hash outlives this write, 2.. ticket ids
-- Returns the number of tickets noted.
local presence_key = KEYS[1]
local keep_s = tonumber(ARGV[1])
local FIRST_TICKET = 2
local CHUNK = 500 -- field/value pairs per HSET: unpack has a stack limit
local now = now_ms()
local fields = {}
for i = FIRST_TICKET, #ARGV do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = now
  if #fields == 2 * CHUNK or i == #ARGV then
    redis.call('HSET', presence_key, unpack(fields))
    fields = {}
  end
end
redis.call('EXPIRE', presence_key, keep_s)
return #ARGV - FIRST_TICKET + 1
