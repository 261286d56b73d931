-- SPDX-License-Identifier: Apache-2.0
-- report: a relay's tail position, for the flow control; and the epoch it
-- is in, so that a relay that only tails learns of a new epoch or a raised
-- start (load.lua) within a report interval.
-- KEYS: S:tails, S:meta. ARGV: relay id, the last seq its tail read.
-- Returns {slowest fresh tail (as the append script), epoch or '', start}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now))
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'start')
return {SLOWEST(KEYS[1]), meta[1] or '', meta[2] or '0'}
