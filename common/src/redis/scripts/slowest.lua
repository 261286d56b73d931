-- SPDX-License-Identifier: Apache-2.0
-- SLOWEST(key): the lowest tail position in S:tails (relay_id -> "<last seq
-- read> <Redis ms>") reported within the last 3 s (-1: none), for the flow
-- control (append_allowance); entries a minute old are relays gone and are
-- removed. Prepended to append.lua and report.lua (redis_scripts.cpp).
local function SLOWEST(key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local slowest = -1
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    local pos, ms = string.match(all[j + 1], '^(%d+) (%d+)$')
    if pos then
      local age = now - tonumber(ms)
      if age <= 3000 then
        if slowest < 0 or tonumber(pos) < slowest then slowest = tonumber(pos) end
      elseif age > 60000 then
        redis.call('HDEL', key, all[j])
      end
    end
  end
  return slowest
end
