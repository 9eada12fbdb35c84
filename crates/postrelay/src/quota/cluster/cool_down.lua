-- postrelay cluster quota: the account takes nothing for a while (its
-- relay answered with a throttle reply). A later end replaces an earlier
-- one, never the other way round.
-- KEYS[1] the cool-down hash; ARGV[1] now ('' : the server's clock),
-- ARGV[2] how long, in microseconds from now, ARGV[3] the reason.
-- `now`: clock.lua, which comes first.
local untl = now + tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if untl > old then
  redis.call('HSET', KEYS[1], 'until', string.format('%.0f', untl), 'reason', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 1000)
end
return 0
