-- The Redis store's one server-side script (smtp_alerts/_store/redis.py).
--
-- Atomic by construction: Redis runs one script at a time. Every key starts with
-- KEYS[1], "{smtp-alerts:<namespace>}": one hash tag, so in a Redis Cluster every
-- key of a store is in one slot and this script may touch them all.
--
-- ARGV[1] the operation: tick (push counts, give back expired leases, claim what
-- is due), ack (a claimed digest is in the claimer's outbox), release (give a
-- claim back now), leave. ARGV[2] the engine's owner name, ARGV[3] JSON.
-- Times are Redis's own (TIME): the hosts' clocks never decide a window.

if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 7: TIME, then writes
local K = KEYS[1]
local op, owner, args = ARGV[1], ARGV[2], cjson.decode(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local HOUR, DAY = 3600, 86400
local CRIT, FOLDABLE, OTHER, REPLACE, SAME = 1, 2, 4, 8, 16

local function has(flags, bit) return math.floor(flags / bit) % 2 == 1 end
local function wkey(g) return K .. ':w:' .. g end
local function ckey(g) return K .. ':c:' .. g end
local function skey(g) return K .. ':s:' .. g end
local function mkey(g) return K .. ':lm:' .. g end  -- a later occurrence's message per problem
local function num(w, field) return tonumber(redis.call('HGET', w, field)) end

local function set_critical(w, at)
  local old = num(w, 'crit')
  if old == nil or at < old then redis.call('HSET', w, 'crit', at) end
end

-- An incident is over when notified, nothing pending, and quiet for repeat_interval.
local function closable(w, win)
  local notified = num(w, 'notified')
  local pending = (num(w, 'npend') or 0) > 0 or (num(w, 'dropped') or 0) > 0
  return notified ~= nil and not pending and now >= notified + win[3]
end

local function close(g)
  redis.call('DEL', wkey(g), ckey(g), skey(g), mkey(g))
  redis.call('SREM', K .. ':groups', g)
end

-- Make sure group g has an open incident (a quiet notified one closes first). It
-- opens now, by Redis's clock: the hosts' times of the occurrences decide no window.
local function open(g, id, win)
  local w = wkey(g)
  if redis.call('EXISTS', w) == 1 then
    if not closable(w, win) then return end
    close(g)
  end
  redis.call('HSET', w, 'id', id, 'opened', now, 'seq', 0, 'dropped', 0,
    'kept', 0, 'npend', 0, 'nnews', 0)
  redis.call('SADD', K .. ':groups', g)
end

-- Timelines (smtp_alerts/_store/timeline.py): a row's field b maps interval index
-- (floor(t / step), as a string) to occurrences, at its incident's step (field ts
-- of the window, its intervals tl..th). Steps follow one ladder, each a multiple of
-- the one before, so coarsening re-keys exactly; an incident spans <= MAXB intervals.
local LADDER, MAXB = {60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400}, 60

local function coarser(step)
  for _, s in ipairs(LADDER) do if s > step then return s end end
  return step * 2
end

local function rekey(b, old, new)
  local out = {}
  for k, n in pairs(b) do
    local key = tostring(math.floor(tonumber(k) * old / new))
    out[key] = (out[key] or 0) + n
  end
  return out
end

-- Widen group g's intervals to first..last (at step), coarser if they would be too
-- many: every row re-keyed then (rare: a few times in an incident's life). Returns
-- the incident's step and intervals.
local function widen(g, first, last, step)
  local w = wkey(g)
  local h = redis.call('HMGET', w, 'ts', 'tl', 'th')
  local old, low, high = tonumber(h[1]) or LADDER[1], tonumber(h[2]), tonumber(h[3])
  local new = math.max(old, step)
  local wl, wh = math.floor(first * step / new), math.floor(last * step / new)
  if low ~= nil then
    wl, wh = math.min(wl, math.floor(low * old / new)), math.max(wh, math.floor(high * old / new))
  end
  local fitted = new
  while math.floor(wh * new / fitted) - math.floor(wl * new / fitted) >= MAXB do
    fitted = coarser(fitted)
  end
  wl, wh = math.floor(wl * new / fitted), math.floor(wh * new / fitted)
  if fitted ~= old then
    local counts = redis.call('HGETALL', ckey(g))
    for i = 1, #counts, 2 do
      local r = cjson.decode(counts[i + 1])
      if r.b then
        r.b = rekey(r.b, old, fitted)
        redis.call('HSET', ckey(g), counts[i], cjson.encode(r))
      end
    end
  end
  redis.call('HSET', w, 'ts', fitted, 'tl', wl, 'th', wh)
  return fitted, wl, wh
end

-- A pushed row's counts per interval (a dense list from interval tl at step ts)
-- added to the row's map at the incident's step.
local function tally(b, counts, tl, ts, step)
  for i, n in ipairs(counts or {}) do
    if n > 0 then
      local key = tostring(math.floor((tl + i - 1) * ts / step))
      b[key] = (b[key] or 0) + n
    end
  end
end

-- A later occurrence's message, kept when it differs from the first sample's.
local function later(g, fp, r, message)
  if message ~= '' and redis.sha1hex(message) ~= r.s then
    redis.call('HSET', mkey(g), fp, message)
  end
end

-- Add n occurrences to an existing row: whether it is unshown, or nil when there is none.
local function add_counts(g, fp, n, first, last, total, unshow_seq, tm)
  local raw = redis.call('HGET', ckey(g), fp)
  if not raw then return nil end
  local r, w = cjson.decode(raw), wkey(g)
  if unshow_seq ~= nil and r.sh == unshow_seq then r.sh = 0 end
  if r.n == 0 and n > 0 then
    redis.call('HINCRBY', w, 'npend', 1)
    if r.sh == 0 then redis.call('HINCRBY', w, 'nnews', 1) end
  end
  r.n, r.t = r.n + n, r.t + total
  r.f, r.l = math.min(r.f, first), math.max(r.l, last)
  if tm ~= nil then
    r.b = r.b or {}
    tally(r.b, tm.counts, tm.tl, tm.ts, tm.step)
    later(g, fp, r, tm.message)
  end
  redis.call('HSET', ckey(g), fp, cjson.encode(r))
  return r.sh == 0
end

local function insert(g, fp, sample, n, first, last, other, tm)
  local w = wkey(g)
  local r = {n = n, t = n, f = first, l = last, sh = 0, b = {}}
  if tm ~= nil then
    tally(r.b, tm.counts, tm.tl, tm.ts, tm.step)
    local own = tm.same and tm.message or cjson.decode(sample).message or ''
    r.s = redis.sha1hex(own)
    later(g, fp, r, tm.message)
  end
  redis.call('HSET', ckey(g), fp, cjson.encode(r))
  redis.call('HSET', skey(g), fp, sample)
  redis.call('HINCRBY', w, 'npend', 1)
  redis.call('HINCRBY', w, 'nnews', 1)
  if not other then redis.call('HINCRBY', w, 'kept', 1) end
end

-- One pushed row: {fp, sample, count, first, last, flags, counts per interval,
-- message}. Returns false when the incident is full and the row must be folded
-- into its other-problems row.
local function push_row(g, row, cap, frame)
  local fp, sample, n, first, last, flags = row[1], row[2], row[3], row[4], row[5], row[6]
  local tm = {counts = row[7], message = row[8] or '', same = has(flags, SAME),
    tl = frame.tl, ts = frame.ts, step = frame.step}
  local unshown = add_counts(g, fp, n, first, last, n, nil, tm)
  if unshown == nil then
    if has(flags, FOLDABLE) and (num(wkey(g), 'kept') or 0) >= cap then return false end
    insert(g, fp, sample, n, first, last, has(flags, OTHER), tm)
    unshown = true
  elseif has(flags, REPLACE) then
    redis.call('HSET', skey(g), fp, sample)  -- an engine's other row: its latest word wins
  end
  if has(flags, CRIT) and unshown then set_critical(wkey(g), now) end
  return true
end

local function push(deltas, win, cap)
  local refused = {}
  for _, d in ipairs(deltas) do
    open(d.g, d.id, win)
    local frame = {tl = d.tl, ts = d.ts, step = LADDER[1]}
    if d.ts > 0 and d.th >= d.tl then frame.step = widen(d.g, d.tl, d.th, d.ts) end
    for _, row in ipairs(d.p) do
      if not push_row(d.g, row, cap, frame) then table.insert(refused, {d.g, row[1]}) end
    end
    if d.d > 0 then redis.call('HINCRBY', wkey(d.g), 'dropped', d.d) end
  end
  return refused
end

-- A claim given back (expired lease, failed render): its counts pending again, due now.
local function merge_back(token, win)
  local f = K .. ':f:' .. token
  local raw = redis.call('GET', f)
  redis.call('DEL', f)
  redis.call('ZREM', K .. ':leases', token)
  if not raw then return 0 end
  local d = cjson.decode(raw)
  local w = wkey(d.g)
  local same = redis.call('HGET', w, 'id') == d.id
  if not same then open(d.g, d.nid, win) end
  for _, row in ipairs(d.rows) do
    local back = add_counts(d.g, row[1], row[3], row[4], row[5], same and 0 or row[3],
      (same and row[6] == 1) and d.seq or nil)
    if back == nil then
      insert(d.g, row[1], row[2], row[3], row[4], row[5], row[7] == 1)
    end
  end
  if d.dropped > 0 then redis.call('HINCRBY', w, 'dropped', d.dropped) end
  redis.call('HSET', w, 'redo', now)
  return 1
end

local function due_at(g, win)
  local w = wkey(g)
  local h = redis.call('HMGET', w, 'opened', 'notified', 'npend', 'nnews', 'dropped', 'crit', 'redo')
  local opened, notified = tonumber(h[1]), tonumber(h[2])
  if opened == nil then return nil end
  local npend, nnews, dropped = tonumber(h[3]) or 0, tonumber(h[4]) or 0, tonumber(h[5]) or 0
  if npend == 0 and dropped == 0 then return nil end
  local at
  if notified == nil then at = opened + win[1]
  elseif nnews > 0 or dropped > 0 then at = notified + win[2]
  else at = notified + win[3] end
  local crit, redo = tonumber(h[6]), tonumber(h[7])
  if crit ~= nil and crit < at then at = crit end
  if redo ~= nil and redo < at then at = redo end
  return at
end

-- Count one email against the shared quotas; nil when they refuse it now.
local function take_send(q)
  local sends = K .. ':sends'
  redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - DAY)
  local day = redis.call('ZCARD', sends)
  local hour = redis.call('ZCOUNT', sends, '(' .. (now - HOUR), '+inf')
  if hour >= q[1] or day >= q[2] then
    redis.call('SET', K .. ':held', now, 'NX')
    return nil
  end
  redis.call('ZADD', sends, now, now .. ':' .. redis.call('INCR', K .. ':fence'))
  local held = tonumber(redis.call('GET', K .. ':held'))
  redis.call('DEL', K .. ':held')
  local grant = {held = held or false, kind = false}
  if day + 1 >= q[2] then
    local first = redis.call('ZRANGE', sends, 0, 0, 'WITHSCORES')
    grant.kind, grant.cap, grant.reopens = 'day', q[2], tonumber(first[2]) + DAY
  elseif hour + 1 >= q[1] then
    local first = redis.call('ZRANGEBYSCORE', sends, '(' .. (now - HOUR), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
    grant.kind, grant.cap, grant.reopens = 'hour', q[1], tonumber(first[2]) + HOUR
  end
  return grant
end

local function reopens_at(q)
  local sends, at = K .. ':sends', now
  local hour = redis.call('ZREVRANGEBYSCORE', sends, '+inf', '(' .. (now - HOUR),
    'WITHSCORES', 'LIMIT', q[1] - 1, 1)
  if #hour > 0 then at = math.max(at, tonumber(hour[2]) + HOUR) end
  local day = redis.call('ZREVRANGE', sends, q[2] - 1, q[2] - 1, 'WITHSCORES')
  if #day > 0 then at = math.max(at, tonumber(day[2]) + DAY) end
  return at
end

-- Form group g's digest from the store's counts and lease it to the claimer.
-- Its timelines run from the incident's first interval up to the claimer's time
-- tnow (its clock, as the occurrences' times are the hosts'; never back).
local function form(g, grant, flush, lease, nid, tnow)
  local w, rows, flight = wkey(g), {}, {}
  local h = redis.call('HMGET', w, 'id', 'seq', 'crit', 'dropped', 'subject', 'ts', 'tl', 'th')
  local seq = tonumber(h[2]) + 1
  local step, last = tonumber(h[6]) or LADDER[1], tonumber(h[8])
  local at = math.floor(tnow / step)
  local low, high
  if h[7] == false then
    step, low, high = widen(g, at, at, step)
  else
    step, low, high = widen(g, last, math.max(last, at), step)
  end
  local counts = redis.call('HGETALL', ckey(g))
  for i = 1, #counts, 2 do
    local fp, r = counts[i], cjson.decode(counts[i + 1])
    if r.n > 0 then
      local sample = redis.call('HGET', skey(g), fp)
      local new = r.sh == 0 and 1 or 0
      local line = {}
      for k = low, high do table.insert(line, (r.b or {})[tostring(k)] or 0) end
      table.insert(rows, {sample, r.n, r.t, r.f, r.l, new, line,
        redis.call('HGET', mkey(g), fp) or ''})
      local other = string.sub(fp, 1, 17) == '["other-problems"' and 1 or 0
      table.insert(flight, {fp, sample, r.n, r.f, r.l, new, other})
      if r.sh == 0 then r.sh = seq end
      r.n = 0
      redis.call('HSET', ckey(g), fp, cjson.encode(r))
    end
  end
  local dropped = tonumber(h[4]) or 0
  redis.call('HSET', w, 'seq', seq, 'notified', now, 'npend', 0, 'nnews', 0, 'dropped', 0)
  redis.call('HDEL', w, 'crit', 'redo')
  local token = tostring(redis.call('INCR', K .. ':fence'))
  redis.call('SET', K .. ':f:' .. token, cjson.encode({g = g, id = h[1], nid = nid .. token, seq = seq,
    rows = flight, dropped = dropped}))
  redis.call('ZADD', K .. ':leases', now + lease, token)
  return {token = token, g = g, id = h[1], seq = seq, crit = h[3] ~= false,
    dropped = dropped, subject = h[5] or false, flush = flush, rows = rows, grant = grant,
    ts = step, tl = low}
end

local function claim(a, win)
  local groups, due = redis.call('SMEMBERS', K .. ':groups'), {}
  for _, g in ipairs(groups) do
    local at = due_at(g, win)
    if at ~= nil and (a.force == 1 or at <= now) then table.insert(due, {g, at}) end
  end
  table.sort(due, function(x, y) return x[2] < y[2] end)
  local claimed, held = {}, false
  for _, item in ipairs(due) do
    local grant = take_send(a.q)
    if grant == nil then held = reopens_at(a.q) break end
    table.insert(claimed, form(item[1], grant, item[2] > now, a.lease, a.nid, a.tnow))
  end
  return claimed, held
end

local function next_due(win)
  local earliest = false
  for _, g in ipairs(redis.call('SMEMBERS', K .. ':groups')) do
    local at = due_at(g, win)
    if at == nil then
      if redis.call('EXISTS', wkey(g)) == 0 or closable(wkey(g), win) then close(g) end
    elseif earliest == false or at < earliest then
      earliest = at
    end
  end
  return earliest
end

local function members_alive()
  local alive = 0
  for _, m in ipairs(redis.call('SMEMBERS', K .. ':members')) do
    if redis.call('EXISTS', K .. ':m:' .. m) == 1 then
      if m ~= owner then alive = 1 end
    else
      redis.call('SREM', K .. ':members', m)
    end
  end
  return alive
end

if op == 'tick' then
  if args.deadline and now > args.deadline then return redis.error_reply('LATE tick refused') end
  local win = args.w
  if args.ttl > 0 then
    redis.call('SET', K .. ':m:' .. owner, 1, 'PX', math.floor(args.ttl * 1000))
    redis.call('SADD', K .. ':members', owner)
  end
  local refused = push(args.deltas, win, args.cap)
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', K .. ':leases', '-inf', now)) do
    merge_back(token, win)
  end
  local claimed, held = {}, false
  if args.claim == 1 then claimed, held = claim(args, win) end
  return cjson.encode({now = now, refused = refused, claimed = claimed, held = held,
    due = next_due(win)})
elseif op == 'ack' then
  local f = K .. ':f:' .. args.token
  local raw = redis.call('GET', f)
  if not raw then return 0 end
  local d = cjson.decode(raw)
  redis.call('DEL', f)
  redis.call('ZREM', K .. ':leases', args.token)
  if args.subject and d.seq == 1 and redis.call('HGET', wkey(d.g), 'id') == d.id then
    redis.call('HSETNX', wkey(d.g), 'subject', args.subject)
  end
  return 1
elseif op == 'release' then
  return merge_back(args.token, args.w)
elseif op == 'leave' then
  redis.call('DEL', K .. ':m:' .. owner)
  redis.call('SREM', K .. ':members', owner)
  return members_alive()
end
return redis.error_reply('unknown operation')
