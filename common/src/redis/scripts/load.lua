-- SPDX-License-Identifier: Apache-2.0
-- load: what a relay needs before it serves, read atomically; and the
-- epoch rule (SPEC "Redis that fails over"; docs/scale-out.md "Epochs").
-- KEYS: S, S:meta, S:machines, S:pending.
-- ARGV: epoch candidate, floor seq (the last seq the caller saw), full 0|1,
--       recent count, the caller's epoch ("" before its first load), the
--       last event the caller saw ("": look for its entry's seq only).
-- Returns {epoch, seq, start} or, full, {epoch, seq, machines, pending,
-- recent, now ms, start} with the hashes as HGETALL arrays, recent newest
-- first (XREVRANGE) and Redis's clock (the pending interrupts' ages are
-- measured on it, so the relays' clocks need not agree). start: the seq
-- before the epoch's first event; a ?since= at or below it is from before.
--
-- A Redis without our meta (new, flushed, restarted empty) gets a new
-- epoch, starting at the caller's floor, so numbers never go back for the
-- clients of the relay that finds it. A Redis with the caller's epoch that
-- does not hold the last entry the caller saw (a failover lost it: the seq
-- is below the floor, or another event has its number) gets a new epoch
-- too, starting at the higher of the two. A caller that saw another epoch
-- than this one raises its seq and start to its floor: its clients' numbers
-- up to there are from before this epoch.
local floor = tonumber(ARGV[2])
local known = ARGV[5] or ''
local last_event = ARGV[6] or ''
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', ARGV[2], 'start', ARGV[2])
elseif known ~= '' and epoch == known then
  local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
  local held = seq >= floor
  if held and floor > 0 then
    local id = string.format('%d-0', floor)
    local found = redis.call('XRANGE', KEYS[1], id, id)
    if #found == 1 then
      if last_event ~= '' then
        held = false
        local fields = found[1][2]
        for j = 1, #fields, 2 do
          if fields[j] == 'e' and fields[j + 1] == last_event then held = true end
        end
      end
    end
    -- No entry with that number and the seq past it: trimmed, not lost
    -- (the tail's hole reloads).
  end
  if not held then
    if seq < floor then seq = floor end
    epoch = ARGV[1]
    local s = string.format('%d', seq)
    redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', s, 'start', s)
  end
elseif known ~= '' then
  local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
  local start = tonumber(redis.call('HGET', KEYS[2], 'start') or '0')
  if seq < floor then redis.call('HSET', KEYS[2], 'seq', ARGV[2]) end
  if start < floor then redis.call('HSET', KEYS[2], 'start', ARGV[2]) end
end
local seq = redis.call('HGET', KEYS[2], 'seq')
local start = redis.call('HGET', KEYS[2], 'start') or '0'
if ARGV[3] ~= '1' then return {epoch, seq, start} end
local recent = {}
if tonumber(ARGV[4]) > 0 then
  recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[4])
end
local t = redis.call('TIME')
local now_ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return {epoch, seq, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), recent, now_ms, start}
