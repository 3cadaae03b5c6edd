#!lua name=yard
-- Switchyard's durable queue: the multi-key steps, as Redis 7 Functions.
-- Loaded by every broker on connect (FUNCTION LOAD REPLACE); persisted in
-- the AOF and replicated, unlike EVALSHA scripts. Layout and field meanings:
-- queue/redis_queue.h. The hot path (submit, claim, complete) uses plain
-- pipelined commands; these functions serve the steps that touch several
-- keys and must leave no crash point between them.
--
-- Every function takes KEYS = the queue's six fixed keys
--   1..3 ready streams for priority 0..2, 4 delayed ZSET, 5 delayed HASH,
--   6 dead-letter stream
-- and ARGV[1] = the queue's key prefix "{jq:NAME}:", from which it derives
-- the keys whose names depend on data (lock, stats, leader); all share the
-- prefix's hash tag, so they live in the same Cluster slot.

-- Redis Cluster: while the slot is migrating, a function may touch a key
-- it did not declare (everything but KEYS) only if the source still holds
-- it; touching one that has moved, or a new one, fails at that call, and
-- the writes before it stay. So every function first reads the undeclared
-- keys it is going to touch (names relative to the prefix): it then fails
-- before its first write, or not at all. (Declared keys are checked by
-- Redis before the function runs.) One exception: yard_reap learns the
-- lock of a record only from XAUTOCLAIM, a write; requeue_expired re-adds
-- the record before it releases the lock, so a failure there can delay a
-- job parked behind that lock, not lose one.
local function local_first(prefix, names)
  local ks = {}
  for _, n in ipairs(names) do
    ks[#ks + 1] = prefix .. n
    if #ks == 500 then
      redis.call('EXISTS', unpack(ks))
      ks = {}
    end
  end
  if #ks > 0 then redis.call('EXISTS', unpack(ks)) end
end

-- The lock keys of 3-tuples pri, entry_id, lock_key in args from `from`.
local function lock_names(args, from)
  local names = {}
  for i = from, #args, 3 do
    local k = args[i + 2]
    if k ~= '' then
      names[#names + 1] = 'mx:' .. k
      names[#names + 1] = 'mxz:' .. k
      names[#names + 1] = 'mxw:' .. k
      names[#names + 1] = 'ctl'
    end
  end
  return names
end

-- The lock names (mx:, mxw:) of the records with these ids in stream `s`
-- (read before anything is written; a missing id adds nothing).
local function record_lock_names(s, ids, names)
  for _, id in ipairs(ids) do
    local e = redis.call('XRANGE', s, id, id)
    if #e == 1 then
      for i = 1, #e[1][2], 2 do
        if e[1][2][i] == 'k' and e[1][2][i + 1] ~= '' then
          names[#names + 1] = 'mx:' .. e[1][2][i + 1]
          names[#names + 1] = 'mxz:' .. e[1][2][i + 1]
          names[#names + 1] = 'mxw:' .. e[1][2][i + 1]
          names[#names + 1] = 'ctl'
        end
      end
    end
  end
  return names
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Stream entry fields (a flat array) to a map; missing fields become ''.
-- o: the submitter's CURVE key ('' without CURVE, and in records from
-- before it existed: their owner is b and r, the submitting connection).
local FIELDS = {'j', 'a', 'x', 'm', 'k', 'b', 'r', 'p', 'n', 'o'}
local function fmap(f)
  local m = {}
  if f then
    for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
  end
  for _, k in ipairs(FIELDS) do
    if m[k] == nil then m[k] = '' end
  end
  if m.n == '' then m.n = '1' end
  return m
end

local function add(keys, pri, m)
  return redis.call('XADD', keys[pri + 1], '*', 'j', m.j, 'a', m.a, 'x', m.x,
                    'm', m.m, 'k', m.k, 'b', m.b, 'r', m.r, 'n', m.n, 'p',
                    m.p, 'o', m.o)
end

local function pack(pri, m)
  return cmsgpack.pack({pri, m.j, m.a, m.x, m.m, m.k, m.b, m.r, m.p, m.n,
                        m.o})
end

local function unpack_entry(s)
  local t = cmsgpack.unpack(s)
  return t[1], {j = t[2], a = t[3], x = t[4], m = t[5], k = t[6], b = t[7],
                r = t[8], p = t[9], n = t[10] or '1', o = t[11] or ''}
end

local function bump(prefix, field, n)
  if n ~= 0 then redis.call('HINCRBY', prefix .. 'stats', field, n) end
end

local function jobs_in(m) return tonumber(m.n) or 1 end

local function clamp_pri(p)
  p = tonumber(p) or 1
  if p < 0 then return 0 elseif p > 2 then return 2 end
  return math.floor(p)
end

-- A dead letter keeps the whole record, why it died and the last error.
local function bury(keys, prefix, pri, m, why, err)
  redis.call('XADD', keys[6], '*', 'j', m.j, 'a', m.a, 'x', m.x, 'm', m.m,
             'k', m.k, 'b', m.b, 'r', m.r, 'n', m.n, 'p', m.p, 'o', m.o, 'q',
             tostring(pri), 'why', why, 'err', err or '', 't',
             tostring(now_ms()))
  bump(prefix, 'dead', jobs_in(m))
  bump(prefix, 'queued', -jobs_in(m))
end

-- Per-key locks: at most N jobs with lock key k hold it at once, N from
-- the queue's controls (P ctl: 'kc:'..k, else 'kc', else 1; yard queue
-- limit --key-concurrency). The first slot is the string mx:k holding its
-- holder (what a one-holder lock always was: old brokers still see it);
-- the others are the members of the sorted set mxz:k, scored by when they
-- expire (Redis's clock). A job that finds no slot is parked in the list
-- mxw:k until a holder releases one.
local function key_concurrency(prefix, k)
  local v = redis.call('HMGET', prefix .. 'ctl', 'kc:' .. k, 'kc')
  local n = tonumber(v[1] or v[2] or '1') or 1
  return math.max(1, math.floor(n))
end

-- mxz:k lives as long as its longest lease.
local function keep_alive(z, ttl)
  if redis.call('PTTL', z) < ttl then redis.call('PEXPIRE', z, ttl) end
end

-- Holders of lock k now (expired members of mxz:k are dropped first).
local function holders(prefix, k)
  local z = prefix .. 'mxz:' .. k
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now_ms())
  return redis.call('EXISTS', prefix .. 'mx:' .. k) + redis.call('ZCARD', z)
end

-- Whether `holder` holds lock k (its lease extended to ttl) or has taken a
-- free slot of it.
local function hold(prefix, k, holder, ttl)
  local mx, z = prefix .. 'mx:' .. k, prefix .. 'mxz:' .. k
  local cur = redis.call('GET', mx)
  if cur == holder then
    redis.call('PEXPIRE', mx, ttl)
    return true
  end
  if redis.call('ZSCORE', z, holder) then
    redis.call('ZADD', z, now_ms() + ttl, holder)
    keep_alive(z, ttl)
    return true
  end
  if not cur then
    redis.call('SET', mx, holder, 'PX', ttl)
    return true
  end
  if holders(prefix, k) >= key_concurrency(prefix, k) then return false end
  redis.call('ZADD', z, now_ms() + ttl, holder)
  keep_alive(z, ttl)
  return true
end

-- Releases the per-key lock `k` held by `holder` and hands each free slot
-- to the next job parked behind it (re-added to its ready stream).
local function release(keys, prefix, k, holder)
  if k == nil or k == '' then return end
  local mx = prefix .. 'mx:' .. k
  if redis.call('GET', mx) == holder then
    redis.call('DEL', mx)
  else
    redis.call('ZREM', prefix .. 'mxz:' .. k, holder)
  end
  for _ = 1, key_concurrency(prefix, k) - holders(prefix, k) do
    local nxt = redis.call('LPOP', prefix .. 'mxw:' .. k)
    if not nxt then break end
    local pri, m = unpack_entry(nxt)
    add(keys, pri, m)
  end
end

-- Takes entry `id` out of stream `s` if this group still has it pending.
-- Returns its field map, or nil when the lease is gone (stale caller).
local function take(s, g, id)
  local e = redis.call('XRANGE', s, id, id)
  if #e ~= 1 or redis.call('XACK', s, g, id) ~= 1 then return nil end
  redis.call('XDEL', s, id)
  return fmap(e[1][2])
end

-- Submit with an idempotency key and/or a not-before time.
-- ARGV: prefix, dedupe_ttl_s, then 10-tuples
--   pri, not_before_unix_ms, dedupe_key|'', j, m, k, b, r, p, o
-- (p: a record of one job, packed as queue/redis_layout.h says)
-- Returns per job: the entry id, 'DELAYED', or 'DUP:' .. first job's id.
local function submit(keys, args)
  local prefix, ttl, now, out, n = args[1], tonumber(args[2]), now_ms(), {}, 0
  local names = {'stats'}
  for i = 3, #args, 10 do
    if args[i + 2] ~= '' then names[#names + 1] = 'dd:' .. args[i + 2] end
  end
  local_first(prefix, names)
  for i = 3, #args, 10 do
    local pri, nb, dk = clamp_pri(args[i]), tonumber(args[i + 1]), args[i + 2]
    local m = {j = args[i + 3], a = '0', x = '0', m = args[i + 4],
               k = args[i + 5], b = args[i + 6], r = args[i + 7],
               p = args[i + 8], n = '1', o = args[i + 9]}
    local prev = false
    if dk ~= '' then
      prev = redis.call('SET', prefix .. 'dd:' .. dk, m.j, 'NX', 'EX', ttl, 'GET')
    end
    if prev then
      out[#out + 1] = 'DUP:' .. prev
    else
      n = n + 1
      if nb > now then
        redis.call('HSET', keys[5], m.j, pack(pri, m))
        redis.call('ZADD', keys[4], nb, m.j)
        out[#out + 1] = 'DELAYED'
      else
        out[#out + 1] = add(keys, pri, m)
      end
    end
  end
  bump(prefix, 'submitted', n)
  bump(prefix, 'queued', n)
  return out
end

-- A failed attempt of one job: its retry (a one-job record in the delayed
-- set) or its dead letter. The stream entry that carried it is acked
-- separately, with the rest of its batch, after this in the same MULTI.
-- Fenced by the lease: an entry no longer pending for `consumer` (its
-- lease ran out and the leader reclaimed it, so the job runs again
-- elsewhere) writes nothing, or a broker cut off for longer than its lease
-- would queue a second copy of the job.
-- ARGV: prefix, group, consumer, then 12-tuples
--   pri, entry_id, retry_at_unix_ms (0: dead-letter it), error, j, a
--   (attempts made, this one included), m, k, b, r, p (one packed job), o
-- Returns per job 'RETRY', 'DLQ' or 'STALE'.
local function fail(keys, args)
  local prefix, g, consumer, out = args[1], args[2], args[3], {}
  local_first(prefix, {'stats'})
  for i = 4, #args, 12 do
    local pri, entry = clamp_pri(args[i]), args[i + 1]
    local at, err = tonumber(args[i + 2]), args[i + 3]
    local m = {j = args[i + 4], a = args[i + 5], x = '0', m = args[i + 6],
               k = args[i + 7], b = args[i + 8], r = args[i + 9],
               p = args[i + 10], n = '1', o = args[i + 11]}
    local mine = redis.call('XPENDING', keys[pri + 1], g, entry, entry, 1,
                            consumer)
    if #mine == 0 then
      bump(prefix, 'fails_fenced', 1)
      out[#out + 1] = 'STALE'
    elseif at > 0 then
      redis.call('HSET', keys[5], m.j, pack(pri, m))
      redis.call('ZADD', keys[4], at, m.j)
      bump(prefix, 'retried', 1)
      out[#out + 1] = 'RETRY'
    else
      bury(keys, prefix, pri, m, 'failed', err)
      out[#out + 1] = 'DLQ'
    end
  end
  return out
end

-- Records that cannot be decoded go to the dead letters with the reason.
-- ARGV: prefix, group, then 3-tuples pri, entry_id, why. Returns 1/0 each.
local function bury_entries(keys, args)
  local prefix, g, out = args[1], args[2], {}
  local_first(prefix, {'stats'})
  for i = 3, #args, 3 do
    local pri, id, why = clamp_pri(args[i]), args[i + 1], args[i + 2]
    local m = take(keys[pri + 1], g, id)
    if m then
      bury(keys, prefix, pri, m, 'undecodable', why)
      bump(prefix, 'undecodable', jobs_in(m))
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  return out
end

-- Completion of jobs that hold a per-key lock. ARGV: prefix, group, then
-- 3-tuples pri, entry_id, lock_key. Returns 1 (done) / 0 (stale) each.
local function complete_locked(keys, args)
  local prefix, g, out = args[1], args[2], {}
  local_first(prefix, lock_names(args, 3))
  for i = 3, #args, 3 do
    local pri, id, k = clamp_pri(args[i]), args[i + 1], args[i + 2]
    local s = keys[pri + 1]
    local ok = redis.call('XACK', s, g, id)
    if ok == 1 then
      redis.call('XDEL', s, id)
      release(keys, prefix, k, s .. '|' .. id)
    end
    out[#out + 1] = ok
  end
  return out
end

-- Per-key locks for claimed jobs. ARGV: prefix, group, ttl_ms, then
-- 3-tuples pri, entry_id, lock_key. Returns per job 1 (this job holds the
-- lock: dispatch it), 0 (another job holds it: this one is parked behind it
-- and leaves the stream) or -1 (the lease was lost).
local function lock(keys, args)
  local prefix, g, ttl, out = args[1], args[2], tonumber(args[3]), {}
  local_first(prefix, lock_names(args, 4))
  for i = 4, #args, 3 do
    local pri, id, k = clamp_pri(args[i]), args[i + 1], args[i + 2]
    local s = keys[pri + 1]
    if hold(prefix, k, s .. '|' .. id, ttl) then
      out[#out + 1] = 1
    else
      local m = take(s, g, id)
      if m then
        redis.call('RPUSH', prefix .. 'mxw:' .. k, pack(pri, m))
        out[#out + 1] = 0
      else
        out[#out + 1] = -1
      end
    end
  end
  return out
end

-- Extends locks still held. ARGV: prefix, ttl_ms, then pairs key, holder.
local function touch_locks(keys, args)
  local prefix, ttl, n = args[1], tonumber(args[2]), 0
  local names = {}
  for i = 3, #args, 2 do
    names[#names + 1] = 'mx:' .. args[i]
    names[#names + 1] = 'mxz:' .. args[i]
  end
  local_first(prefix, names)
  for i = 3, #args, 2 do
    local mx, z = prefix .. 'mx:' .. args[i], prefix .. 'mxz:' .. args[i]
    if redis.call('GET', mx) == args[i + 1] then
      redis.call('PEXPIRE', mx, ttl)
      n = n + 1
    elseif redis.call('ZSCORE', z, args[i + 1]) then
      redis.call('ZADD', z, now_ms() + ttl, args[i + 1])
      keep_alive(z, ttl)
      n = n + 1
    end
  end
  return n
end

-- Maintenance (leader): leases idle longer than min_idle_ms are reclaimed;
-- the job is re-added under a new entry id (the fencing token: the old
-- holder's late ack is a no-op) or, after max_expiries, dead-lettered.
-- ARGV: prefix, group, min_idle_ms, count, max_expiries.
-- Returns {requeued, dead, vanished}.
-- A record whose lease is gone (claimed by __reaper from entry `id` of
-- stream `s`): out of the stream, and back in with one more expiry, or a
-- dead letter at `maxx` expiries. Returns true when it was requeued.
local function requeue_expired(keys, prefix, pri, s, g, id, fields, maxx)
  local m = fmap(fields)
  redis.call('XACK', s, g, id)
  redis.call('XDEL', s, id)
  m.x = tostring((tonumber(m.x) or 0) + 1)
  local requeued = tonumber(m.x) < maxx
  if requeued then
    add(keys, pri, m)
  else
    bury(keys, prefix, pri, m, 'lease-expired',
         'the lease expired ' .. m.x .. ' times')
  end
  release(keys, prefix, m.k, s .. '|' .. id)
  return requeued
end

-- requeue_expired for each of `entries` (XAUTOCLAIM / XCLAIM replies) of
-- stream `s`. Returns how many were requeued and how many dead-lettered.
local function requeue_all(keys, prefix, pri, s, g, entries, maxx)
  local requeued, dead = 0, 0
  for _, e in ipairs(entries) do
    if requeue_expired(keys, prefix, pri, s, g, e[1], e[2], maxx) then
      requeued = requeued + 1
    else
      dead = dead + 1
    end
  end
  return requeued, dead
end

local function reap(keys, args)
  local prefix, g, idle, n, maxx = args[1], args[2], args[3], args[4],
                                   tonumber(args[5])
  local requeued, dead, vanished = 0, 0, 0
  local_first(prefix, {'stats', 'reapcur:0', 'reapcur:1', 'reapcur:2'})
  for pri = 0, 2 do
    local s, ck = keys[pri + 1], prefix .. 'reapcur:' .. pri
    local r = redis.call('XAUTOCLAIM', s, g, '__reaper', idle,
                         redis.call('GET', ck) or '0-0', 'COUNT', n)
    redis.call('SET', ck, r[1])
    local q, d = requeue_all(keys, prefix, pri, s, g, r[2], maxx)
    requeued, dead = requeued + q, dead + d
    vanished = vanished + #r[3]
  end
  bump(prefix, 'reaped', requeued)
  return {requeued, dead, vanished}
end

-- Maintenance (leader): the records a dead broker (consumer `who`, gone
-- from the broker registry) still holds are requeued at once, as if their
-- leases had expired, instead of a lease later. Once it holds nothing, the
-- consumer leaves the group (DELCONSUMER drops only pending entries, and
-- it has none). Only entries idle for at least min_idle_ms are taken (the
-- consumer's broker touches live ones more often). ARGV: prefix, group,
-- who, count, max_expiries, min_idle_ms. Returns {requeued, dead,
-- vanished, left} (left: streams where it still holds records; call again
-- while > 0).
local function reap_consumer(keys, args)
  local prefix, g, who, n, maxx = args[1], args[2], args[3],
                                  tonumber(args[4]), tonumber(args[5])
  local idle = tonumber(args[6]) or 0
  local requeued, dead, vanished, left = 0, 0, 0, 0
  local pending, names = {}, {'stats'}
  for pri = 0, 2 do
    local p = redis.call('XPENDING', keys[pri + 1], g, 'IDLE', idle, '-', '+',
                         n, who)
    local ids = {}
    for i, e in ipairs(p) do ids[i] = e[1] end
    record_lock_names(keys[pri + 1], ids, names)
    pending[pri] = p
  end
  local_first(prefix, names)
  for pri = 0, 2 do
    local s = keys[pri + 1]
    local p = pending[pri]
    if #p > 0 then
      local ids = {}
      for i, e in ipairs(p) do ids[i] = e[1] end
      local got = redis.call('XCLAIM', s, g, '__reaper', idle, unpack(ids))
      local q, d = requeue_all(keys, prefix, pri, s, g, got, maxx)
      requeued, dead = requeued + q, dead + d
      vanished = vanished + #ids - #got
    end
    if #redis.call('XPENDING', s, g, '-', '+', 1, who) == 0 then
      redis.call('XGROUP', 'DELCONSUMER', s, g, who)
    elseif #redis.call('XPENDING', s, g, 'IDLE', idle, '-', '+', 1, who) > 0 then
      left = left + 1
    end
  end
  bump(prefix, 'reaped', requeued)
  return {requeued, dead, vanished, left}
end

-- Maintenance (leader): delayed jobs and retries whose time has come go to
-- their ready stream. ARGV: prefix, count. Returns how many moved.
local function promote(keys, args)
  local_first(args[1], {'stats'})
  local due = redis.call('ZRANGE', keys[4], '-inf', now_ms(), 'BYSCORE',
                         'LIMIT', 0, tonumber(args[2]))
  for _, j in ipairs(due) do
    local packed = redis.call('HGET', keys[5], j)
    if packed then
      local pri, m = unpack_entry(packed)
      add(keys, pri, m)
      redis.call('HDEL', keys[5], j)
    end
    redis.call('ZREM', keys[4], j)
  end
  bump(args[1], 'promoted', #due)
  return #due
end

-- A draining broker gives back jobs it claimed but did not dispatch, so
-- other brokers take them at once (no attempt is counted).
-- ARGV: prefix, group, then pairs pri, entry_id. Returns how many.
local function unclaim(keys, args)
  local prefix, g, n = args[1], args[2], 0
  local names = {}
  for i = 3, #args, 2 do
    record_lock_names(keys[clamp_pri(args[i]) + 1], {args[i + 1]}, names)
  end
  local_first(prefix, names)
  for i = 3, #args, 2 do
    local pri, id = clamp_pri(args[i]), args[i + 1]
    local s = keys[pri + 1]
    local m = take(s, g, id)
    if m then
      add(keys, pri, m)  -- first: a failed release must not lose the job
      release(keys, prefix, m.k, s .. '|' .. id)
      n = n + 1
    end
  end
  return n
end

-- Operator: dead letters back to their ready streams with fresh attempt
-- counts. ARGV: prefix, count. Returns how many moved.
local function requeue_dead(keys, args)
  local_first(args[1], {'stats'})
  local r = redis.call('XRANGE', keys[6], '-', '+', 'COUNT', tonumber(args[2]))
  for _, e in ipairs(r) do
    local m = fmap(e[2])
    local f = {}
    for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
    m.a, m.x = '0', '0'
    add(keys, clamp_pri(f.q), m)
    redis.call('XDEL', keys[6], e[1])
    bump(args[1], 'requeued_dead', jobs_in(m))
    bump(args[1], 'queued', jobs_in(m))
  end
  return #r
end

-- Operator: removes up to `count` jobs that wait (ready, not yet claimed, or
-- delayed). Jobs running under a lease are left alone. ARGV: prefix, group,
-- count. Returns how many were removed (call until 0).
local function purge(keys, args)
  local g, n, removed = args[2], tonumber(args[3]), 0
  local_first(args[1], {'stats'})
  for pri = 0, 2 do
    local s = keys[pri + 1]
    local r = redis.call('XREADGROUP', 'GROUP', g, '__purge', 'COUNT', n,
                         'STREAMS', s, '>')
    if r then
      for _, e in ipairs(r[1][2]) do
        redis.call('XACK', s, g, e[1])
        redis.call('XDEL', s, e[1])
        removed = removed + jobs_in(fmap(e[2]))
      end
    end
    redis.call('XGROUP', 'DELCONSUMER', s, g, '__purge')
  end
  local due = redis.call('ZRANGE', keys[4], 0, n - 1)
  for _, j in ipairs(due) do
    redis.call('ZREM', keys[4], j)
    redis.call('HDEL', keys[5], j)
  end
  bump(args[1], 'queued', -(removed + #due))
  return removed + #due
end

-- Maintenance (leader): the dead-letter stream keeps at most `max` records;
-- the oldest go, at most `count` per call, and the jobs they held are
-- counted (stats dead_trimmed). ARGV: prefix, max, count. Returns how many
-- records went.
local function trim_dead(keys, args)
  local prefix, max, count = args[1], tonumber(args[2]), tonumber(args[3])
  local_first(prefix, {'stats'})
  local over = redis.call('XLEN', keys[6]) - max
  if over <= 0 then return 0 end
  local r = redis.call('XRANGE', keys[6], '-', '+', 'COUNT',
                       math.min(over, count))
  local jobs = 0
  for _, e in ipairs(r) do
    jobs = jobs + jobs_in(fmap(e[2]))
    redis.call('XDEL', keys[6], e[1])
  end
  bump(prefix, 'dead_trimmed', jobs)
  return #r
end

-- The queue's rate limit (yard queue limit), one token bucket for every
-- broker: takes up to `want` tokens from a bucket of `burst` that fills at
-- `rate` per second (Redis's clock, so brokers' clocks do not matter).
-- ARGV: prefix, want, rate, burst. Returns {granted, ms until the next
-- token when none was granted}.
local function take_tokens(keys, args)
  local prefix = args[1]
  local want, rate, burst = tonumber(args[2]), tonumber(args[3]),
                            tonumber(args[4])
  local_first(prefix, {'tb'})
  local tb, now = prefix .. 'tb', now_ms()
  local v = redis.call('HMGET', tb, 't', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil or ts > now then tokens, ts = burst, now end
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  local granted = math.max(0, math.min(want, math.floor(tokens)))
  tokens = tokens - granted
  redis.call('HSET', tb, 't', tostring(tokens), 'ts', now)
  -- An idle bucket is full again after burst / rate seconds: forget it then.
  redis.call('PEXPIRE', tb, math.ceil(burst * 1000 / rate) + 1000)
  local wait = 0
  if granted == 0 then wait = math.ceil((1 - tokens) * 1000 / rate) end
  return {granted, wait}
end

-- Whether a canceller (admin '1'/'0', CURVE key, broker, route) may cancel
-- the job of record m: an admin; the key that submitted it (o); or, for a
-- record without o (no CURVE, or written before o existed), the very
-- connection that submitted it (b and r).
local function may_cancel(m, admin, key, broker, route)
  if admin == '1' then return true end
  if m.o ~= '' then return key ~= '' and key == m.o end
  return broker ~= '' and broker == m.b and route == m.r
end

-- A cancel of jobs that no broker could serve locally: recorded in P cx
-- (job id -> msgpack {admin, key, broker, route, unix ms}), which the
-- brokers check when they claim and when they renew their leases (only
-- while it is not empty), and finish the job Cancelled there. A delayed
-- job's record is here: its owner is checked now, and the job goes to its
-- ready stream at once, to be claimed and finished. The hash holds at most
-- `max` ids and expires ttl_ms after its last write.
-- ARGV: prefix, max, ttl_ms, admin, key, broker, route, then job ids.
-- Returns per id 'REQUESTED', 'FORBIDDEN' or 'FULL'.
local function cancel(keys, args)
  local prefix, max, ttl = args[1], tonumber(args[2]), tonumber(args[3])
  local admin, key, broker, route = args[4], args[5], args[6], args[7]
  local cx, out = prefix .. 'cx', {}
  local_first(prefix, {'cx'})
  local value = cmsgpack.pack({admin, key, broker, route, now_ms()})
  for i = 8, #args do
    local j = args[i]
    local packed = redis.call('HGET', keys[5], j)
    local pri, m
    if packed then pri, m = unpack_entry(packed) end
    if m and not may_cancel(m, admin, key, broker, route) then
      out[#out + 1] = 'FORBIDDEN'
    elseif redis.call('HLEN', cx) >= max and
           redis.call('HEXISTS', cx, j) == 0 then
      out[#out + 1] = 'FULL'
    else
      redis.call('HSET', cx, j, value)
      if m then
        add(keys, pri, m)
        redis.call('HDEL', keys[5], j)
        redis.call('ZREM', keys[4], j)
      end
      out[#out + 1] = 'REQUESTED'
    end
  end
  redis.call('PEXPIRE', cx, ttl)
  return out
end

-- Leader lock: acquire (SET NX PX + a new fencing number) or extend (when
-- `token` holds it). ARGV: prefix, token, ttl_ms. Returns the fencing
-- number while `token` leads, 0 when another holder does.
local function lead(keys, args)
  local key, fence = args[1] .. 'leader', args[1] .. 'fence'
  local_first(args[1], {'leader', 'fence'})
  local cur = redis.call('GET', key)
  if cur == args[2] then
    redis.call('PEXPIRE', key, args[3])
    return tonumber(redis.call('GET', fence) or '0')
  end
  if cur then return 0 end
  redis.call('SET', key, args[2], 'NX', 'PX', args[3])
  return redis.call('INCR', fence)
end

-- Leader lock: release, only by its holder. ARGV: prefix, token. 1/0.
local function resign(keys, args)
  local key = args[1] .. 'leader'
  if redis.call('GET', key) == args[2] then
    redis.call('DEL', key)
    return 1
  end
  return 0
end

redis.register_function('yard_submit', submit)
redis.register_function('yard_fail', fail)
redis.register_function('yard_reap_consumer', reap_consumer)
redis.register_function('yard_bury', bury_entries)
redis.register_function('yard_complete_locked', complete_locked)
redis.register_function('yard_lock', lock)
redis.register_function('yard_touch_locks', touch_locks)
redis.register_function('yard_reap', reap)
redis.register_function('yard_promote', promote)
redis.register_function('yard_unclaim', unclaim)
redis.register_function('yard_requeue_dead', requeue_dead)
redis.register_function('yard_purge', purge)
redis.register_function('yard_lead', lead)
redis.register_function('yard_resign', resign)
redis.register_function('yard_trim_dead', trim_dead)
redis.register_function('yard_take_tokens', take_tokens)
redis.register_function('yard_cancel', cancel)
