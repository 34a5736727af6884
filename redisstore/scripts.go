package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each one is a single atomic step on one node (on
// Cluster, on one slot). Numbers that may exceed 14 digits (times in µs,
// sequence numbers) are written with fmt, never tostring, which would use
// an exponent. Epochs are decimal strings below 2^53 and are only compared
// as strings.
//
// Entry hash fields: e epoch, q ticket seq (reported as Entry.Ticket), g the
// guard seq that invalidations are compared with (the load's ticket; for a
// Set, the writer's ticket while q is the Set's own seq), c created,
// f fresh until, s stale until, x error until (store clock, µs), d load
// duration (ns), n "1" for a negative entry, k the seq of a soft
// invalidation, tg the tags (encodeList), tk the Redis keys of the tags
// checked inside the script (encodeList), v the value.

const luaPrelude = `
local function fmt(n) return string.format('%.0f', n) end

local function replid()
  local info = redis.call('INFO', 'replication')
  return string.match(info, 'master_replid:(%w+)') or ''
end

-- epoch returns the epoch named by marker mk, and the sequence kept in
-- the same hash (standalone). A marker that is missing (a flushed or
-- restarted server) or written by another replication history (a
-- failover: the promoted replica has a new replication ID) means a new
-- epoch: standalone creates it from the candidate cand (the sequence goes
-- on); on Cluster the caller must first fence the slot, so epoch returns
-- false.
local function epoch(mk, cand, check, cluster)
  local m = redis.call('HMGET', mk, 'e', 'r', 'n')
  if m[1] and (check ~= '1' or m[2] == replid()) then
    return m[1], m[3]
  end
  if cluster then return false end
  redis.call('HSET', mk, 'e', cand, 'r', replid())
  return cand, m[3]
end

-- now is the store clock: the server's TIME plus the test offset, in µs.
local function now(off)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]) + off
end

-- nextseq advances the invalidation sequence, field n of hash sk. It never
-- goes back, even if the key is lost: a new sequence starts a day ahead of
-- the server's clock (unoffset), and each step is at least that clock.
local function nextseq(sk)
  local t = redis.call('TIME')
  local wall = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cur = redis.call('HGET', sk, 'n')
  local s
  if cur then
    s = math.max(tonumber(cur) + 1, wall)
  else
    s = wall + 86400000000
  end
  redis.call('HSET', sk, 'n', fmt(s))
  return s
end

local function split(s)
  local out, i = {}, 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    local n = tonumber(string.sub(s, i, c - 1))
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end

-- release deletes lease key lk if token holds it.
local function release(lk, token)
  if token == '0' then return end
  local cur = redis.call('GET', lk)
  if cur and string.sub(cur, 1, #token + 1) == token .. ':' then
    redis.call('DEL', lk)
  end
end
`

// lookupScript reads an entry, judges it, and takes the lease if asked.
//
//	KEYS: entry, version, lease, marker (standalone: it holds the sequence)
//	ARGV: cluster, offset µs, candidate epoch, check replid, token, lease
//	      TTL µs, early (-1: a fresh entry is due now), hard-below,
//	      soft-below
//
// hard-below and soft-below come from the read-side check of tags in other
// slots (Cluster): an entry whose guard is below them is dropped or stale.
//
// Reply: {"uninit"} or {"ok", state, lease, held, epoch, seq|false, now,
// version|false, [e, q, g, c, f, s, x, d, n, tg, v]}; state 0 miss,
// 1 fresh, 2 stale. Standalone gives the sequence, Cluster the key's
// version.
var lookupScript = redis.NewScript(luaPrelude + lookupSrc)

const lookupSrc = `
local cluster = ARGV[1] == '1'
local E, seq = epoch(KEYS[4], ARGV[3], ARGV[4], cluster)
if not E then return {'uninit'} end
local t = now(tonumber(ARGV[2]))
local ent = redis.call('HMGET', KEYS[1], 'e', 'q', 'g', 'c', 'f', 's', 'x', 'd', 'n', 'k', 'tg', 'tk', 'v')
local state, has = 0, false
local fr = 0
if ent[1] then
  local g = tonumber(ent[3])
  local drop = ent[1] ~= E or g < tonumber(ARGV[8])
  local soft = ent[10] ~= false or g < tonumber(ARGV[9])
  if not drop and ent[12] and ent[12] ~= '' then
    for _, tk in ipairs(split(ent[12])) do
      local tv = redis.call('HMGET', tk, 'h', 's')
      if tv[1] and tonumber(tv[1]) > g then drop = true break end
      if tv[2] and tonumber(tv[2]) > g then soft = true end
    end
  end
  fr = tonumber(ent[5])
  local st, er = tonumber(ent[6]), tonumber(ent[7])
  if drop then
    redis.call('DEL', KEYS[1])
  elseif t < math.max(st, er) then
    has = true
    if t < fr and not soft then state = 1
    elseif t < st then state = 2
    end
  end
end
local lease, held = 0, 0
local try = state ~= 1
if state == 1 then
  local early = tonumber(ARGV[7])
  try = early < 0 or early > 0 and t + tonumber(ent[8]) / 1000 * early >= fr
end
if try then
  local cur = redis.call('GET', KEYS[3])
  local holder, live = nil, false
  if cur then
    local c = string.find(cur, ':', 1, true)
    holder = string.sub(cur, 1, c - 1)
    live = tonumber(string.sub(cur, c + 1)) > t
  end
  if live and holder ~= ARGV[5] then
    held = 1
  elseif ARGV[5] ~= '0' then
    -- Granted, or renewed for the token that holds it (a caller taking
    -- back a lease its process abandoned): the lease runs from now.
    local ttl = tonumber(ARGV[6])
    redis.call('SET', KEYS[3], ARGV[5] .. ':' .. fmt(t + ttl), 'PX', math.max(1, math.ceil(ttl / 1000)))
    lease = 1
  end
end
local version = false
if cluster then
  version = redis.call('GET', KEYS[2]) or '0'
  seq = false
else
  seq = seq or '0'
end
local out = {'ok', state, lease, held, E, seq, fmt(t), version}
if has then
  for _, i in ipairs({1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13}) do out[#out + 1] = ent[i] end
end
return out
`

// fillScript is the conditional write.
//
//	KEYS: entry, version, lease, marker, tag keys...
//	ARGV: cluster, offset µs, candidate epoch, check replid, ticket epoch,
//	      ticket seq, token, value, negative, TTL µs, stale µs, error µs,
//	      load duration ns, set ("0"; standalone "1"; Cluster: the seq of
//	      the Set), tags (encodeList)
//
// The tag keys are those in the entry's slot (all of them, standalone);
// the caller checked the others before. Reply: {"uninit"} or {"ok",
// accepted, seq}.
var fillScript = redis.NewScript(luaPrelude + fillSrc)

const fillSrc = `
local cluster = ARGV[1] == '1'
local E = epoch(KEYS[4], ARGV[3], ARGV[4], cluster)
if not E then return {'uninit'} end
local t = now(tonumber(ARGV[2]))
local t0 = tonumber(ARGV[6])
local first = 5
local ok = ARGV[5] == E
if ok then
  local kv = redis.call('GET', KEYS[2])
  if kv and tonumber(kv) > t0 then ok = false end
end
if ok then
  for i = first, #KEYS do
    local s = redis.call('HGET', KEYS[i], 's')
    if s and tonumber(s) > t0 then ok = false break end
  end
end
local q = t0
if ok then
  if ARGV[14] ~= '0' then
    if cluster then q = tonumber(ARGV[14]) else q = nextseq(KEYS[4]) end
    local kv = redis.call('GET', KEYS[2])
    if not kv or tonumber(kv) < q then redis.call('SET', KEYS[2], fmt(q)) end
  end
  local fr = t + tonumber(ARGV[10])
  local st, er = fr + tonumber(ARGV[11]), fr + tonumber(ARGV[12])
  local tk = {}
  for i = first, #KEYS do tk[#tk + 1] = #KEYS[i] .. ':' .. KEYS[i] end
  redis.call('DEL', KEYS[1])
  local f = {'e', E, 'q', fmt(q), 'g', fmt(t0), 'c', fmt(t), 'f', fmt(fr), 's', fmt(st), 'x', fmt(er),
    'd', ARGV[13], 'tg', ARGV[15], 'tk', table.concat(tk)}
  if ARGV[9] == '1' then
    f[#f + 1] = 'n'; f[#f + 1] = '1'
  else
    f[#f + 1] = 'v'; f[#f + 1] = ARGV[8]
  end
  redis.call('HSET', KEYS[1], unpack(f))
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((math.max(st, er) - t) / 1000)))
end
release(KEYS[3], ARGV[7])
local r = 0
if ok then r = 1 end
return {'ok', r, fmt(q)}
`

// releaseScript gives up a lease. KEYS: lease. ARGV: token.
var releaseScript = redis.NewScript(luaPrelude + releaseSrc)

const releaseSrc = `
release(KEYS[1], ARGV[1])
return 1
`

// invalidateScript applies one invalidation to the keys and tags of one
// slot (standalone: all of them, and it takes the seq itself).
//
//	KEYS: marker (standalone: it holds the sequence), entry and version of
//	      each key..., tag keys...
//	ARGV: cluster, candidate epoch, check replid, seq (Cluster), soft,
//	      number of keys
//
// Reply: {"uninit"} or {"ok", seq}.
var invalidateScript = redis.NewScript(luaPrelude + invalidateSrc)

const invalidateSrc = `
local cluster = ARGV[1] == '1'
local E = epoch(KEYS[1], ARGV[2], ARGV[3], cluster)
if not E then return {'uninit'} end
local first, s = 2, 0
if cluster then
  s = tonumber(ARGV[4])
else
  s = nextseq(KEYS[1])
end
local ss = fmt(s)
local soft = ARGV[5] == '1'
local nk = tonumber(ARGV[6])
for i = 0, nk - 1 do
  local ek, vk = KEYS[first + 2 * i], KEYS[first + 2 * i + 1]
  local kv = redis.call('GET', vk)
  if not kv or tonumber(kv) < s then redis.call('SET', vk, ss) end
  local m = redis.call('HMGET', ek, 'g', 'e')
  if m[1] and (tonumber(m[1]) < s or m[2] ~= E) then
    if soft and m[2] == E then
      redis.call('HSET', ek, 'k', ss)
    else
      redis.call('DEL', ek)
    end
  end
end
for i = first + 2 * nk, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 's', 'h')
  if not cur[1] or tonumber(cur[1]) < s then redis.call('HSET', KEYS[i], 's', ss) end
  if not soft and (not cur[2] or tonumber(cur[2]) < s) then redis.call('HSET', KEYS[i], 'h', ss) end
end
return {'ok', ss}
`

// Cluster only.

// seqScript advances the sequence. KEYS: the sequence's hash. Reply: the
// new seq.
var seqScript = redis.NewScript(luaPrelude + seqSrc)

const seqSrc = `
return fmt(nextseq(KEYS[1]))
`

// fenceScript fences every slot given whose marker is missing or from
// another replication history: a new epoch for the slot, with floor the
// sequence number the caller took after it saw a slot uninitialised. No
// ticket below the floor is trusted against the slot's versions. It runs
// once per node, over all the node's slots (hence the flag).
//
//	KEYS: the first marker. ARGV: candidate epoch, floor, the other
//	markers. Reply: slots fenced.
//
// Only one marker is a declared key: Cluster routes a script by its keys,
// which must share a slot even with the flag; the flag lets the script
// reach the node's other slots.
var fenceScript = redis.NewScript("#!lua flags=allow-cross-slot-keys\n" + luaPrelude + fenceSrc)

const fenceSrc = `
local rid = replid()
local n = 0
local function fence(mk)
  local m = redis.call('HMGET', mk, 'e', 'r')
  if not (m[1] and m[2] == rid) then
    redis.call('DEL', mk)
    redis.call('HSET', mk, 'e', ARGV[1], 'r', rid, 'f', ARGV[2])
    n = n + 1
  end
end
fence(KEYS[1])
for i = 3, #ARGV do fence(ARGV[i]) end
return n
`

// tagCheckScript reads the versions of tags of one slot for the read-side
// check and the fill's pre-check.
//
//	KEYS: marker, tag keys... ARGV: check replid.
//
// Reply: {"uninit"} or {"ok", max hard version, max version, floor}.
var tagCheckScript = redis.NewScript(luaPrelude + tagCheckSrc)

const tagCheckSrc = `
local m = redis.call('HMGET', KEYS[1], 'e', 'r', 'f')
if not m[1] or (ARGV[1] == '1' and m[2] ~= replid()) then return {'uninit'} end
local h, s = 0, 0
for i = 2, #KEYS do
  local tv = redis.call('HMGET', KEYS[i], 'h', 's')
  if tv[1] then h = math.max(h, tonumber(tv[1])) end
  if tv[2] then s = math.max(s, tonumber(tv[2])) end
end
return {'ok', fmt(h), fmt(s), m[3] or '0'}
`
