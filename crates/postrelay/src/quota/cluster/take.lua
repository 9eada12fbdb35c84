-- postrelay cluster quota: one take, all or nothing, in one round trip.
-- KEYS[1] the rate (GCRA "theoretical arrival time", microseconds),
-- KEYS[2] the cool-down (hash: until, reason), KEYS[3..] one hash per
-- window (field: bucket number, value: count).
-- ARGV[1] now in microseconds, or '' for the server's clock (TIME);
-- ARGV[2] messages, ARGV[3] recipients, ARGV[4] microseconds between two
-- messages of the rate (0: no rate), ARGV[5] the burst; then per window:
-- its span in microseconds, 'm' or 'r' (what it counts), its maximum.
-- Returns {0} when everything was charged, {1, wait, which, reason} when
-- nothing was (wait in microseconds; which: -1 cool-down, 0 rate, k the
-- k-th window), {2, 0, which} when the request can never fit.
local BUCKETS = 120
-- `now`: clock.lua, which comes first.
local messages = tonumber(ARGV[2])
local recipients = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local wait, which, reason = 0, 0, ''

local cool = redis.call('HMGET', KEYS[2], 'until', 'reason')
if cool[1] and tonumber(cool[1]) > now then
  wait, which, reason = tonumber(cool[1]) - now, -1, cool[2] or ''
end

local new_tat
if interval > 0 then
  if messages > burst then return {2, 0, 0} end
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  new_tat = tat + messages * interval
  local w = new_tat - burst * interval - now
  if w > wait then wait, which = w, 0 end
end

local charge = {}
for k = 1, #KEYS - 2 do
  local span = tonumber(ARGV[3 + 3 * k])
  local amount = messages
  if ARGV[4 + 3 * k] == 'r' then amount = recipients end
  local max = tonumber(ARGV[5 + 3 * k])
  if amount > max then return {2, 0, k} end
  local size = span / BUCKETS
  local current = math.floor(now / size)
  local flat = redis.call('HGETALL', KEYS[2 + k])
  local live, stale, total = {}, {}, 0
  for i = 1, #flat, 2 do
    local n = tonumber(flat[i])
    if n < current - BUCKETS then
      stale[#stale + 1] = flat[i]
    else
      live[#live + 1] = {n, tonumber(flat[i + 1])}
      total = total + live[#live][2]
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[2 + k], unpack(stale)) end
  local excess = total + amount - max
  if excess > 0 then
    table.sort(live, function(a, b) return a[1] < b[1] end)
    for _, b in ipairs(live) do
      excess = excess - b[2]
      if excess <= 0 then
        local w = (b[1] + BUCKETS + 1) * size - now
        if w > wait then wait, which = w, k end
        break
      end
    end
  end
  charge[k] = {current, amount, span + 2 * size}
end

if wait > 0 then return {1, math.ceil(wait), which, reason} end
if new_tat then
  redis.call('SET', KEYS[1], string.format('%.3f', new_tat),
    'PX', math.ceil((new_tat - now) / 1000) + 1000)
end
for k, c in pairs(charge) do
  if c[2] > 0 then
    redis.call('HINCRBY', KEYS[2 + k], c[1], c[2])
    redis.call('PEXPIRE', KEYS[2 + k], math.ceil(c[3] / 1000))
  end
end
return {0}
