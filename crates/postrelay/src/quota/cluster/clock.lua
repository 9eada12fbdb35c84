-- postrelay cluster quota: the prelude of every script. `now` is
-- ARGV[1] (microseconds since the epoch, the caller's clock) or, when
-- ARGV[1] is '', the server's own clock (TIME), one for every node.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
