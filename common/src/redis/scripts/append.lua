-- SPDX-License-Identifier: Apache-2.0
-- append: one batch of a relay's stdin events (docs/scale-out.md).
-- KEYS: S, S:meta, S:machines, S:mstate, S:pending, S:relays, S:morder, S:tails
-- ARGV: epoch candidate, floor seq, maxlen, relay id, batch counter, max
--       machines, then (kind, key, state, event) per event. A Redis without
-- our meta gets a new epoch starting at the floor (as in load.lua).
-- Returns {epoch, first seq, last seq, duplicate 0|1, slowest tail}.
-- A counter not above the one recorded in S:relays is a resend after a lost
-- reply: dropped, reported as a duplicate. S:morder (machine_id -> seq of its
-- last state_change) bounds the machine hashes like a relay's own table:
-- past max machines, the least recently active (lowest seq) leave both.
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', ARGV[2], 'start', ARGV[2])
end
local done = tonumber(redis.call('HGET', KEYS[6], ARGV[4]) or '0')
if tonumber(ARGV[5]) <= done then return {epoch, 0, 0, 1} end
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local first = seq + 1
local max_machines = tonumber(ARGV[6])
local now_ms = nil
for i = 7, #ARGV, 4 do
  seq = seq + 1
  local kind, key, state, event = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], string.format('%d-0', seq), 'e', event)
  if kind == 'm' then
    local former = redis.call('HGET', KEYS[4], key) or ''
    redis.call('HSET', KEYS[3], key, string.format('%d', seq) .. '\n' .. former .. '\n' .. event)
    if state ~= '' then redis.call('HSET', KEYS[4], key, state) end
    redis.call('ZADD', KEYS[7], seq, key)
    if max_machines > 0 and redis.call('ZCARD', KEYS[7]) > max_machines then
      local oldest = redis.call('ZPOPMIN', KEYS[7])
      redis.call('HDEL', KEYS[3], oldest[1])
      redis.call('HDEL', KEYS[4], oldest[1])
    end
  elseif kind == 'i' then
    if not now_ms then
      local t = redis.call('TIME')
      now_ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
    end
    redis.call('HSET', KEYS[5], key, string.format('%d', seq) .. '\n' .. now_ms .. '\n' .. event)
  end
end
redis.call('HSET', KEYS[2], 'seq', string.format('%d', seq))
return {epoch, first, seq, 0, SLOWEST(KEYS[8])}
