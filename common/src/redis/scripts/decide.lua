-- SPDX-License-Identifier: Apache-2.0
-- decide: exactly one decision per interrupt wins in the group.
-- KEYS: S, S:meta, S:pending. ARGV: interrupt_id, decision event, maxlen.
-- Returns {epoch, seq}: seq 0 when the interrupt was not pending.
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then return {'', 0} end
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return {epoch, 0} end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'e', ARGV[2])
return {epoch, seq}
