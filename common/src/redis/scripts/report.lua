-- SPDX-License-Identifier: Apache-2.0
-- report: a relay's tail position, for the flow control.
-- KEYS: S:tails. ARGV: relay id, the last seq its tail read.
-- Returns the slowest fresh tail, like the append script.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now))
return SLOWEST(KEYS[1])
