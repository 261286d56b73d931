-- SPDX-License-Identifier: Apache-2.0
-- load: what a relay needs before it serves, read atomically.
-- KEYS: S, S:meta, S:machines, S:pending.
-- ARGV: epoch candidate, floor seq, full 0|1, recent count.
-- Returns {epoch, seq} or, full, {epoch, seq, machines, pending, recent,
-- now ms} with the hashes as HGETALL arrays, recent newest first
-- (XREVRANGE) and Redis's clock (the pending interrupts' ages are measured
-- on it, so the relays' clocks need not agree).
-- A Redis without our meta (new, flushed, restarted empty) gets a new epoch
-- here, and its seq starts at the caller's last seq, so numbers never go
-- back for the clients of the relay that finds it.
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', ARGV[2])
end
local seq = redis.call('HGET', KEYS[2], 'seq')
if ARGV[3] ~= '1' then return {epoch, seq} end
local recent = {}
if tonumber(ARGV[4]) > 0 then
  recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[4])
end
local t = redis.call('TIME')
local now_ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return {epoch, seq, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), recent, now_ms}
