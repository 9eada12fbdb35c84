-- postrelay cluster quota: an account's use of its limits, read only.
-- KEYS and ARGV[1] (now) as in take.lua; ARGV[2] is 'r' or 'm' for each
-- window key in turn.
-- Returns {cool-down left (microseconds, 0: none), its reason, how far
-- the rate's arrival time is ahead of now (microseconds), then per
-- window: its count, and microseconds until its oldest bucket frees
-- (-1: empty)}.
local BUCKETS = 120
-- `now`: clock.lua, which comes first.
local out = {0, '', 0}
local cool = redis.call('HMGET', KEYS[2], 'until', 'reason')
if cool[1] and tonumber(cool[1]) > now then
  out[1], out[2] = math.ceil(tonumber(cool[1]) - now), cool[2] or ''
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now then out[3] = math.ceil(tat - now) end
for k = 1, #KEYS - 2 do
  local size = tonumber(ARGV[1 + k]) / BUCKETS
  local current = math.floor(now / size)
  local flat = redis.call('HGETALL', KEYS[2 + k])
  local total, oldest = 0, nil
  for i = 1, #flat, 2 do
    local n = tonumber(flat[i])
    if n >= current - BUCKETS then
      total = total + tonumber(flat[i + 1])
      if not oldest or n < oldest then oldest = n end
    end
  end
  out[#out + 1] = total
  if oldest then
    out[#out + 1] = math.ceil((oldest + BUCKETS + 1) * size - now)
  else
    out[#out + 1] = -1
  end
end
return out
