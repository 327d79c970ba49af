"""The job store's state transitions as Lua scripts: each runs atomically inside Redis.

Every script takes ARGV[1] = key prefix, ARGV[2] = now (epoch seconds),
ARGV[3] = TTL of a finished record; its own arguments follow. Keys are built
inside the scripts from the prefix (one Redis, not a cluster). `finish` is the
one way into a terminal state: it clears the lane, the running set and the
lease, counts the outcome, hands the job to the janitor (leftovers of other
attempts), and tells a sweep parent when its last child ends (the caller then
enqueues the parent for aggregation).

Fencing: each delivery that runs gets `fence`, a token that only grows (never
reset, not even by a retry), and its owner string in `lease_owner`. Commit,
finish, requeue and step are valid only for the delivery that still owns the
job (`ours`), and commit only for the current token: a worker that lost its
lease can change nothing.
"""

PRELUDE = r"""
local P, NOW, TTL = ARGV[1], ARGV[2], ARGV[3]
local function jk(id) return P .. 'job:' .. id end
local function terminal(st) return st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' end
local function ours(id, owner)  -- the delivery `owner` still owns the running job
  local k = jk(id)
  if redis.call('HGET', k, 'state') ~= 'running' or redis.call('HGET', k, 'lease_owner') ~= owner then return false end
  local holder = redis.call('GET', P .. 'lease:' .. id)
  return (not holder) or holder == owner
end
local function finish(id, state, err)
  local k = jk(id)
  local kind = redis.call('HGET', k, 'kind') or 'unknown'
  redis.call('HSET', k, 'state', state, 'finished_at', NOW, 'updated_at', NOW, 'waiting', '0')
  redis.call('HDEL', k, 'outage_since')  -- an outage waited out ends with the job
  if err then redis.call('HSET', k, 'error', err) end
  redis.call('EXPIRE', k, TTL)
  local lane = redis.call('HGET', k, 'lane')
  if lane then redis.call('ZREM', P .. 'lane:' .. lane, id) end
  redis.call('ZREM', P .. 'running', id)
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('DEL', P .. 'lease:' .. id)
  redis.call('HINCRBY', P .. 'stats', 'finished|' .. state .. '|' .. kind, 1)
  redis.call('ZADD', P .. 'janitor', NOW, id)  -- other attempts' leftovers go, after a grace period
  local parent = redis.call('HGET', k, 'parent')
  if parent and parent ~= '' and redis.call('SREM', P .. 'children:' .. parent, id) == 1 then
    local pk = jk(parent)
    local done = redis.call('HINCRBY', pk, 'children_done', 1)
    local total = tonumber(redis.call('HGET', pk, 'children_total') or '0') or 0
    redis.call('HSET', pk, 'progress', cjson.encode({phase = 'children', done = done, total = total}),
               'progress_done', done, 'updated_at', NOW)
    if redis.call('SCARD', P .. 'children:' .. parent) == 0 then return parent end
  end
  return ''
end
local function mark_resent(k)  -- a job's message sent again: when, and counted on the job and in the stats
  redis.call('HSET', k, 'resent_at', NOW)
  redis.call('HINCRBY', k, 'redeliveries', 1)
  redis.call('HINCRBY', P .. 'stats', 'resent', 1)
end
local function dead_letter(id)
  redis.call('HSET', jk(id), 'dead_letter', '1')
  redis.call('LPUSH', P .. 'deadletter', id)
  redis.call('LTRIM', P .. 'deadletter', 0, 9999)
end
"""

# ARGV: 4 id, 5 lane, 6 limit (-1: none), 7 idempotency key ('' none), 8 spec hash, 9 ttl while live,
# 10 the broker queue's list ('' none), 11 the job's broker message, 12.. fields
# A conditional insert: an id that exists is refused ('exists', nothing written), never merged or overwritten.
# With a message, the record and the message land together (one script: one replicated unit), or neither.
SUBMIT = PRELUDE + r"""
local id, lane, limit, idem, hash, live = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing and redis.call('EXISTS', jk(existing)) == 1 then
    return {'existing', existing, redis.call('HGET', jk(existing), 'spec_hash') or ''}
  end
end
if redis.call('EXISTS', jk(id)) == 1 then return {'exists', id, redis.call('HGET', jk(id), 'spec_hash') or ''} end
local lk = P .. 'lane:' .. lane
local depth = redis.call('ZCARD', lk)
if limit >= 0 and depth >= limit then return {'full', tostring(depth), ''} end
local fields = {}
for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', jk(id), unpack(fields))
redis.call('EXPIRE', jk(id), live)
redis.call('ZADD', lk, NOW, id)
redis.call('ZADD', P .. 'index', NOW, id)
if idem ~= '' then redis.call('SET', idem, id, 'EX', TTL) end
redis.call('HINCRBY', P .. 'stats', 'submitted|' .. (redis.call('HGET', jk(id), 'kind') or ''), 1)
if ARGV[10] ~= '' then redis.call('LPUSH', ARGV[10], ARGV[11]) end
return {'created', id, hash, tostring(redis.call('ZRANK', lk, id) + 1)}
"""

# ARGV: 4 id, 5 owner, 6 lease ms, 7 max attempts, 8 worker name
BEGIN = PRELUDE + r"""
local id = ARGV[4]
local k = jk(id)
local st = redis.call('HGET', k, 'state')
if not st then return {'missing', ''} end
if terminal(st) then return {'terminal', st} end
local lease = P .. 'lease:' .. id
local holder = redis.call('GET', lease)
if holder then return {'leased', holder} end
local waiting = redis.call('HGET', k, 'waiting') == '1'
if waiting and redis.call('SCARD', P .. 'children:' .. id) > 0 then return {'waiting', ''} end
local dl = redis.call('HGET', k, 'deadline_at')
if (not waiting) and dl and dl ~= '' and tonumber(NOW) > tonumber(dl) then
  return {'expired', finish(id, 'expired', 'deadline passed before the job could finish')}
end
if redis.call('HGET', k, 'cancel_requested') == '1' then
  return {'cancelled', finish(id, 'cancelled', 'cancelled by request')}
end
local attempts
if waiting then
  attempts = tonumber(redis.call('HGET', k, 'attempts') or '1') or 1
else
  attempts = redis.call('HINCRBY', k, 'attempts', 1)
  if st == 'running' then  -- a redelivery of a job whose worker was lost
    redis.call('HINCRBY', k, 'redeliveries', 1)
    redis.call('HINCRBY', P .. 'stats', 'redeliveries', 1)
  end
end
if attempts > tonumber(ARGV[7]) then
  local last = redis.call('HGET', k, 'error') or ''
  if last == '' then last = 'the worker was lost each time' end
  local reason = 'gave up after ' .. (attempts - 1) .. ' attempts (SCALESPACE_MAX_DELIVERIES): ' .. last
  local parent = finish(id, 'failed', reason)
  dead_letter(id)
  return {'dead', parent, reason}
end
local fence = redis.call('HINCRBY', k, 'fence', 1)
redis.call('SET', lease, ARGV[5], 'PX', ARGV[6])
redis.call('HSET', k, 'state', 'running', 'worker', ARGV[8], 'lease_owner', ARGV[5], 'attempt_started_at', NOW,
           'heartbeat_at', NOW, 'updated_at', NOW, 'waiting', '0')
if (redis.call('HGET', k, 'started_at') or '') == '' then redis.call('HSET', k, 'started_at', NOW) end
local lane = redis.call('HGET', k, 'lane')
if lane then redis.call('ZREM', P .. 'lane:' .. lane, id) end
redis.call('ZREM', P .. 'delayed', id)
redis.call('ZADD', P .. 'running', NOW, id)
local out = {'run', tostring(attempts), tostring(fence)}
for _, v in ipairs(redis.call('HGETALL', k)) do out[#out + 1] = v end  -- the record as it is now: no second read
return out
"""

# ARGV: 4 id, 5 owner, 6 lease ms.  Renews the lease; takes it back if it vanished while the job is still ours.
HEARTBEAT = PRELUDE + r"""
local id, owner = ARGV[4], ARGV[5]
local lease = P .. 'lease:' .. id
local holder = redis.call('GET', lease)
local k = jk(id)
if holder == owner then
  redis.call('PEXPIRE', lease, ARGV[6])
elseif (not holder) and redis.call('HGET', k, 'state') == 'running' and redis.call('HGET', k, 'lease_owner') == owner
       and redis.call('HGET', k, 'waiting') ~= '1' then
  redis.call('SET', lease, owner, 'PX', ARGV[6])
else
  return 0
end
redis.call('HSET', k, 'heartbeat_at', NOW)
return 1
"""

# ARGV: 4 id, 5 owner, 6 progress JSON ('' unchanged), 7 progress done.  Returns {why to stop or '', ms the
# lease key is held by `owner` for at least (0: not held by it; the job may still be ours until it is reaped)}.
STEP = PRELUDE + r"""
local id, owner = ARGV[4], ARGV[5]
local k = jk(id)
local mine = ours(id, owner)
-- only the owner's progress: a delivery that lost the job (or whose record a failover lost) writes nothing
if mine and ARGV[6] ~= '' then
  redis.call('HSET', k, 'progress', ARGV[6], 'progress_done', ARGV[7], 'updated_at', NOW)
end
local lease = P .. 'lease:' .. id
local held = 0
if redis.call('GET', lease) == owner then held = redis.call('PTTL', lease) end
if redis.call('HGET', k, 'cancel_requested') == '1' then return {'cancelled', held} end
if not mine then return {'lease-lost', 0} end
return {'', held}
"""

# ARGV: 4 id, 5 owner, 6 fence token, 7 committed attempt, 8 artifacts JSON, 9 summary JSON, 10 duration s,
# 11 histogram bucket field, 12 the last progress JSON ('' none: the last step wrote it), 13 its steps done,
# 14 the attempt's manifest, the bytes the job's manifest.json gets ('' none: the attempt wrote its own).
# The commit point: valid only for the delivery that owns the job, with the current token.
COMMIT = PRELUDE + r"""
local id = ARGV[4]
local k = jk(id)
local st = redis.call('HGET', k, 'state')
if not st then return {'missing', ''} end
if st ~= 'running' then return {'not-running', st} end
if not ours(id, ARGV[5]) or redis.call('HGET', k, 'fence') ~= ARGV[6] then return {'not-ours', st} end
redis.call('HSET', k, 'artifacts', ARGV[8], 'summary', ARGV[9], 'duration_s', ARGV[10], 'error', '',
           'committed_attempt', ARGV[7])
if ARGV[12] and ARGV[12] ~= '' then redis.call('HSET', k, 'progress', ARGV[12], 'progress_done', ARGV[13]) end
if ARGV[14] and ARGV[14] ~= '' then  -- kept until published (then dropped), expiring with the record at the latest
  redis.call('SET', P .. 'manifest:' .. id, ARGV[14], 'EX', TTL)
  redis.call('HSET', k, 'manifest_held', '1')
end
local parent = finish(id, 'succeeded', false)
local dk = P .. 'durations:' .. (redis.call('HGET', k, 'kind') or 'unknown')
redis.call('HINCRBY', dk, ARGV[11], 1)
redis.call('HINCRBYFLOAT', dk, 'sum', ARGV[10])
redis.call('HINCRBY', dk, 'count', 1)
return {'succeeded', parent}
"""

# ARGV: 4 id, 5 owner, 6 state, 7 error, 8 stopped step, 9 '1' to dead-letter
FINISH = PRELUDE + r"""
local id = ARGV[4]
local st = redis.call('HGET', jk(id), 'state')
if st ~= 'running' then return {'not-running', st or ''} end
if not ours(id, ARGV[5]) then return {'not-ours', st} end
redis.call('HSET', jk(id), 'stopped_step', ARGV[8])
local parent = finish(id, ARGV[6], ARGV[7])
if ARGV[9] == '1' then dead_letter(id) end
return {ARGV[6], parent}
"""

# ARGV: 4 id, 5 owner, 6 error, 7 mode, 8 delay s. mode '0': the job's own failure (a retry);
# '1': not the job's fault (shutdown: the attempt is given back); '2': S3 or Redis unreachable (the attempt
# is given back, the retry counted, and the outage's start kept in outage_since)
REQUEUE = PRELUDE + r"""
local id, owner = ARGV[4], ARGV[5]
local k = jk(id)
if not ours(id, owner) then return 0 end
redis.call('HSET', k, 'state', 'queued', 'error', ARGV[6], 'queued_at', NOW, 'updated_at', NOW)
redis.call('DEL', P .. 'lease:' .. id)
redis.call('ZREM', P .. 'running', id)
redis.call('ZADD', P .. 'lane:' .. (redis.call('HGET', k, 'lane') or 'batch'), NOW, id)
if ARGV[7] ~= '0' then redis.call('HINCRBY', k, 'attempts', -1) end
if ARGV[7] ~= '1' then redis.call('HINCRBY', k, 'retries', 1); redis.call('HINCRBY', P .. 'stats', 'retries', 1) end
if ARGV[7] == '2' then redis.call('HSETNX', k, 'outage_since', NOW) end
local delay = tonumber(ARGV[8]) or 0
if delay > 0 then redis.call('ZADD', P .. 'delayed', tonumber(NOW) + delay, id); return 2 end
return 1
"""

# ARGV: 4 lease s.  Running jobs whose lease is gone and heartbeat is stale go back to their lane.
REAP = PRELUDE + r"""
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'running', 0, -1)) do
  local k = jk(id)
  if redis.call('EXISTS', P .. 'lease:' .. id) == 0 then
    local st = redis.call('HGET', k, 'state')
    local hb = tonumber(redis.call('HGET', k, 'heartbeat_at') or '0') or 0
    if st ~= 'running' or redis.call('HGET', k, 'waiting') == '1' then
      redis.call('ZREM', P .. 'running', id)
    elseif tonumber(NOW) - hb > tonumber(ARGV[4]) then
      local w = redis.call('HGET', k, 'worker') or '?'
      local lane = redis.call('HGET', k, 'lane') or 'batch'
      redis.call('HSET', k, 'state', 'queued', 'queued_at', NOW, 'updated_at', NOW,
                 'error', 'worker ' .. w .. ' was lost (no heartbeat for ' .. ARGV[4] .. ' s); requeued')
      redis.call('ZREM', P .. 'running', id)
      redis.call('ZADD', P .. 'lane:' .. lane, NOW, id)
      redis.call('HINCRBY', k, 'redeliveries', 1)
      redis.call('HINCRBY', P .. 'stats', 'redeliveries', 1)
      out[#out + 1] = id
      out[#out + 1] = lane
    end
  end
end
return out
"""

# ARGV: 4 seconds, 5 most to send, 6.. lanes.  Jobs queued for longer than the seconds, whose message may be
# lost (a worker died between taking it and starting the job, or a failover lost it): [id, lane, ...] to send
# again, each at most once per period (`resent_at`). A job also in `delayed` waits for DUE instead.
RESEND = PRELUDE + r"""
local out, older, most, scanned = {}, tonumber(ARGV[4]), tonumber(ARGV[5]), 0
local before = tonumber(NOW) - older
for i = 6, #ARGV do
  local lane = ARGV[i]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'lane:' .. lane, '-inf', before, 'LIMIT', 0, 1000)) do
    scanned = scanned + 1
    local k = jk(id)
    local last = tonumber(redis.call('HGET', k, 'resent_at') or '0') or 0
    if redis.call('HGET', k, 'state') == 'queued' and last <= before
       and not redis.call('ZSCORE', P .. 'delayed', id) then
      mark_resent(k)
      out[#out + 1] = id
      out[#out + 1] = lane
      if #out >= 2 * most then return out end
    end
    if scanned >= 1000 then return out end
  end
end
return out
"""

# ARGV: 4 id.  A delivery found its lease lost and the record says queued, held by no one, not delayed: the
# start this delivery made is gone (a failover lost it), and the message was taken. Its lane, to send the
# message again now; nil otherwise. Counted as a resend (a message that still waits is delivered twice: the
# second finds the job running or ended and is dropped).
RESEND_LOST_START = PRELUDE + r"""
local id = ARGV[4]
local k = jk(id)
if redis.call('HGET', k, 'state') ~= 'queued' or redis.call('EXISTS', P .. 'lease:' .. id) == 1
   or redis.call('ZSCORE', P .. 'delayed', id) then
  return false
end
mark_resent(k)
return redis.call('HGET', k, 'lane') or ''
"""

# Jobs whose retry delay is over: [id, lane, ...]
DUE = PRELUDE + r"""
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', NOW, 'LIMIT', 0, 100)) do
  redis.call('ZREM', P .. 'delayed', id)
  if redis.call('HGET', jk(id), 'state') == 'queued' then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', jk(id), 'lane') or 'batch'
  end
end
return out
"""

# ARGV: 4 id.  Queued: cancelled now.  Running: flag read between steps.  Waiting sweep: cancelled with its children.
CANCEL = PRELUDE + r"""
local id = ARGV[4]
local k = jk(id)
local st = redis.call('HGET', k, 'state')
if not st then return {'missing', ''} end
if terminal(st) then return {'terminal', ''} end
if st == 'queued' then return {'cancelled', finish(id, 'cancelled', 'cancelled by request')} end
if redis.call('HGET', k, 'waiting') == '1' then
  local kids = redis.call('SMEMBERS', P .. 'children:' .. id)
  local out = {'cancelled', finish(id, 'cancelled', 'cancelled by request')}
  for _, c in ipairs(kids) do out[#out + 1] = c end
  return out
end
redis.call('HSET', k, 'cancel_requested', '1', 'cancel_step', redis.call('HGET', k, 'progress_done') or '0',
           'updated_at', NOW)
return {'cancelling', ''}
"""

# ARGV: 4 id, 5 lane limit, 6 deadline_at ('' none), 7 ttl while live
RETRY = PRELUDE + r"""
local id = ARGV[4]
local k = jk(id)
local st = redis.call('HGET', k, 'state')
if not st then return {'missing', ''} end
if st ~= 'failed' and st ~= 'cancelled' and st ~= 'expired' then return {'refused', st} end
local lane = redis.call('HGET', k, 'lane') or 'batch'
local depth = redis.call('ZCARD', P .. 'lane:' .. lane)
if tonumber(ARGV[5]) >= 0 and depth >= tonumber(ARGV[5]) then return {'full', tostring(depth)} end
redis.call('HSET', k, 'state', 'queued', 'attempts', '0', 'error', '', 'cancel_requested', '0', 'cancel_step', '',
           'stopped_step', '', 'finished_at', '', 'started_at', '', 'queued_at', NOW, 'updated_at', NOW,
           'deadline_at', ARGV[6], 'dead_letter', '0', 'progress', '', 'progress_done', '0', 'worker', '')
redis.call('HINCRBY', k, 'retries', 1)
redis.call('HINCRBY', P .. 'stats', 'retries', 1)
redis.call('EXPIRE', k, ARGV[7])
redis.call('ZADD', P .. 'lane:' .. lane, NOW, id)
return {'queued', lane}
"""

# ARGV: 4 id, 5 owner, 6 children JSON list.  The sweep waits for the children that are not finished yet.
WAIT_CHILDREN = PRELUDE + r"""
local id, owner = ARGV[4], ARGV[5]
local k = jk(id)
if not ours(id, owner) then return -1 end
local kids = cjson.decode(ARGV[6])
local ck = P .. 'children:' .. id
redis.call('DEL', ck)
local done = 0
for _, c in ipairs(kids) do
  local st = redis.call('HGET', jk(c), 'state')
  if st and not terminal(st) then redis.call('SADD', ck, c) else done = done + 1 end
end
redis.call('EXPIRE', ck, ARGV[3])
redis.call('HSET', k, 'waiting', '1', 'lease_owner', '', 'children', ARGV[6], 'children_total', #kids, 'children_done', done,
           'progress', cjson.encode({phase = 'children', done = done, total = #kids}), 'progress_done', done,
           'updated_at', NOW)
if redis.call('GET', P .. 'lease:' .. id) == owner then redis.call('DEL', P .. 'lease:' .. id) end
redis.call('ZREM', P .. 'running', id)
return redis.call('SCARD', ck)
"""

# ARGV: 4 id.  A queued job past its deadline is expired when someone looks at it.
EXPIRE_IF_DUE = PRELUDE + r"""
local id = ARGV[4]
local k = jk(id)
if redis.call('HGET', k, 'state') ~= 'queued' then return {'no', ''} end
local dl = redis.call('HGET', k, 'deadline_at')
if dl and dl ~= '' and tonumber(NOW) > tonumber(dl) then
  return {'expired', finish(id, 'expired', 'deadline passed before the job could start')}
end
return {'no', ''}
"""

# ARGV: 4.. job ids whose committer published manifest.json.  The manifest the commit kept is dropped (the
# store holds it now); off the janitor's list when there is nothing left for it: succeeded with one attempt
# ever (fence 1, committed attempt 1). Returns how many came off the list.
JANITOR_SKIP = PRELUDE + r"""
local jan, n = P .. 'janitor', 0
for i = 4, #ARGV do
  local k = jk(ARGV[i])
  if redis.call('HGET', k, 'state') == 'succeeded' then
    redis.call('DEL', P .. 'manifest:' .. ARGV[i])  -- published: manifest.json holds the kept bytes now
    if redis.call('HGET', k, 'fence') == '1' and redis.call('HGET', k, 'committed_attempt') == '1' then
      n = n + redis.call('ZREM', jan, ARGV[i])
    end
  end
end
return n
"""

# ARGV: 4 id, 5 the score it was taken at.  The janitor is done with a job, unless it finished again since.
JANITOR_DONE = PRELUDE + r"""
local jan = P .. 'janitor'
local score = redis.call('ZSCORE', jan, ARGV[4])
if score and tonumber(score) <= tonumber(ARGV[5]) then redis.call('ZREM', jan, ARGV[4]); return 1 end
return 0
"""
