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
// checked inside the script (encodeList), v the value, a the early-refresh
// lead (µs before f at which the entry falls due for early refresh; 0:
// never). An entry without a (written by a version that drew early
// refresh per read) is never due early; it expires as with a plain TTL.

const luaPrelude = luaFeed + `
local function fmt(n) return string.format('%.0f', n) end

-- Parsing. Every number the scripts keep is a decimal integer below 2^53
-- (exact in Lua and in Go); anything else under one of the store's key
-- names is corrupt. int reads an unsigned one, sint one that may be
-- negative (instants of the store clock); both return nil for anything
-- else, a missing field included.
local function int(s)
  if type(s) ~= 'string' or #s > 16 or not string.find(s, '^%d+$') then return nil end
  local n = tonumber(s)
  if n >= 9007199254740992 then return nil end
  return n
end

local function sint(s)
  if type(s) == 'string' and string.sub(s, 1, 1) == '-' then
    local n = int(string.sub(s, 2))
    return n and -n
  end
  return int(s)
end

-- bad reports whether a reply of redis.pcall is an error (WRONGTYPE: a key
-- of another type under one of the store's names).
local function bad(r) return type(r) == 'table' and r.err ~= nil end

local function replid()
  local info = redis.call('INFO', 'replication')
  return string.match(info, 'master_replid:(%w+)') or ''
end

-- uninit is the reply of a script that found its slot uninitialised; the
-- second element says that it deleted a corrupt key on the way.
local function uninit(corrupt)
  if corrupt then return {'uninit', 1} end
  return {'uninit'}
end

-- now is the store clock: the server's TIME plus the test offset, in µs.
local function now(off)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]) + off
end

-- nextseq advances the invalidation sequence, field n of hash sk. It never
-- goes back, even if the key is lost: a new sequence starts a day ahead of
-- the server's clock (unoffset), and each step is at least that clock. A
-- sequence that does not parse counts as lost.
local function nextseq(sk)
  local t = redis.call('TIME')
  local wall = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cur = redis.pcall('HGET', sk, 'n')
  if bad(cur) then
    redis.call('DEL', sk)
    cur = false
  end
  local s
  if int(cur) then
    s = math.max(int(cur) + 1, wall)
  else
    s = wall + 86400000000
  end
  redis.call('HSET', sk, 'n', fmt(s))
  return s
end

-- epoch returns the epoch named by marker mk, the sequence kept in the
-- same hash (standalone), and whether the marker was corrupt. A marker
-- that is missing (a flushed or restarted server) or written by another
-- replication history (a failover: the promoted replica has a new
-- replication ID) means a new epoch: standalone creates it from the
-- candidate cand (the sequence advances); on Cluster the caller must first
-- fence the slot, so epoch returns false. A marker that does not parse (a
-- key of another type, an epoch, sequence or floor that is not a number)
-- is deleted and treated as missing: a new epoch, in which nothing of the
-- old one is trusted, and, standalone, a sequence that restarts ahead of
-- every value it had (see nextseq).
local function epoch(mk, cand, check, cluster)
  local m = redis.pcall('HMGET', mk, 'e', 'r', 'n', 'f')
  local corrupt = false
  if bad(m) or (m[1] and not int(m[1])) or (m[3] and not int(m[3])) or (m[4] and not int(m[4])) then
    redis.call('DEL', mk)
    m, corrupt = {false, false, false, false}, true
  end
  if m[1] and (check ~= '1' or m[2] == replid()) then
    return m[1], m[3], false
  end
  if cluster then return false, nil, corrupt end
  -- The sequence goes on (or restarts ahead, if the marker lost it), so
  -- that the new epoch's tickets are above the versions kept from before.
  local s = nextseq(mk)
  redis.call('HSET', mk, 'e', cand, 'r', replid())
  return cand, fmt(s), corrupt
end

-- repair replaces a version that does not parse: a key's version (string
-- vk) or a tag's versions (hash, fields s and h). Its true value is
-- unknown, so it is repaired as "very high", never as zero: zero would
-- accept a fill whose load began before the invalidation the lost value
-- recorded, and serve an entry filled before it. Standalone it becomes a
-- new sequence number, above every ticket issued so far: it fences every
-- load and entry the lost value could have fenced, and no load that takes
-- its ticket after the repair. On Cluster the script cannot reach the
-- sequence: it deletes the key and the slot's epoch marker mk, as if the
-- node had lost the slot's data, and returns false; the caller replies
-- uninit, and the client fences the slot (a new epoch, with a floor taken
-- after the repair, which tags of the slot count as a hard version).
local function repair(k, mk, tag, cluster)
  redis.call('DEL', k)
  if cluster then
    redis.call('DEL', mk)
    return false
  end
  local s = fmt(nextseq(mk))
  if tag then redis.call('HSET', k, 's', s, 'h', s) else redis.call('SET', k, s) end
  return true
end

-- version reads a key's version (0 when absent); nil when it does not
-- parse.
local function version(vk)
  local v = redis.pcall('GET', vk)
  if bad(v) then return nil end
  if not v then return 0 end
  return int(v)
end

-- tagv reads the versions of tag key tk: its last hard invalidation and
-- its last one (0 when absent); nil when they do not parse.
local function tagv(tk)
  local v = redis.pcall('HMGET', tk, 'h', 's')
  if bad(v) then return nil end
  local h, s = 0, 0
  if v[1] then h = int(v[1]) end
  if v[2] then s = int(v[2]) end
  if not (h and s) then return nil end
  return h, s
end

-- split reverses encodeList; nil for malformed input.
local function split(s)
  local out, i = {}, 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    if not c or c == i or not string.find(string.sub(s, i, c - 1), '^%d+$') then return nil end
    local n = tonumber(string.sub(s, i, c - 1))
    if c + n > #s then return nil end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end

local escapes = {['%'] = '%25', ['{'] = '%7B', ['}'] = '%7D'}

-- tagkeys returns the Redis keys of tags (as layout.tagKey names them),
-- without duplicates, under the prefix of key name k, encoded as one
-- string (encodeList) and as a set.
local function tagkeys(k, tags)
  local prefix = string.match(k, '^([^{]*){')
  local out, set = {}, {}
  for _, t in ipairs(tags) do
    if t == '' then t = '%' else t = string.gsub(t, '[%%{}]', escapes) end
    local tk = prefix .. '{' .. t .. '}:t'
    if not set[tk] then
      set[tk] = true
      out[#out + 1] = #tk .. ':' .. tk
    end
  end
  return table.concat(out), set
end

-- parselease parses lease value cur, "token:expiry": the holder and the
-- expiry; nil when it does not parse.
local function parselease(cur)
  local c = string.find(cur, ':', 1, true)
  if not c then return nil end
  local holder, exp = string.sub(cur, 1, c - 1), sint(string.sub(cur, c + 1))
  -- A token is any uint64: up to 20 digits, compared as a string.
  if not (exp and #holder <= 20 and string.find(holder, '^%d+$')) then return nil end
  return holder, exp
end

-- tombstone returns the token of a released lease, "~token", or nil.
local function tombstone(cur)
  if string.sub(cur, 1, 1) ~= '~' then return nil end
  local tok = string.sub(cur, 2)
  if #tok == 0 or #tok > 20 or not string.find(tok, '^%d+$') then return nil end
  return tok
end

-- release deletes lease key lk if token holds it. A lease key of another
-- type is held by nobody: it is deleted.
local function release(lk, token)
  if token == '0' then return end
  local cur = redis.pcall('GET', lk)
  if bad(cur) then
    redis.call('DEL', lk)
  elseif cur and string.sub(cur, 1, #token + 1) == token .. ':' then
    redis.call('DEL', lk)
  end
end

-- entry parses the fields of an entry hash, read with HMGET in the order
-- e q g c f s x d n k tg tk v a, for the entry under key name k. It returns
-- nil when a field is missing or malformed, when the negative flag n is
-- set with a value or missing without one, when a tag list does not
-- decode, or when the tag keys tk are not those of the tags tg (all of
-- them standalone; a subset on Cluster, where the client checks that the
-- subset is those of the key's slot): a wrong tk would skip the check of
-- a tag. Otherwise it returns the parsed numbers and tag keys.
local function entry(ent, k, cluster)
  local p = {e = ent[1], q = int(ent[2]), g = int(ent[3]), c = sint(ent[4]), f = sint(ent[5]),
    s = sint(ent[6]), x = sint(ent[7]), d = int(ent[8])}
  if not (int(p.e) and p.q and p.g and p.c and p.f and p.s and p.x and p.d) then return nil end
  p.a = 0
  if ent[14] then
    p.a = int(ent[14])
    if not p.a then return nil end
  end
  if ent[9] then
    if ent[9] ~= '1' or ent[13] then return nil end
  elseif not ent[13] then
    return nil
  end
  if ent[10] and not int(ent[10]) then return nil end
  if not (ent[11] and ent[12]) then return nil end
  local tags, tks = split(ent[11]), split(ent[12])
  if not (tags and tks) then return nil end
  local want, set = tagkeys(k, tags)
  if cluster then
    for _, tk in ipairs(tks) do
      if not set[tk] then return nil end
    end
  elseif ent[12] ~= want then
    return nil
  end
  p.tks = tks
  return p
end
`

// lookupScript reads an entry, judges it, and takes the lease if asked.
//
//	KEYS: entry, version, lease, marker (standalone: it holds the sequence)
//	ARGV: cluster, offset µs, candidate epoch, check replid, token, lease
//	      TTL µs, early ("1": a fresh entry is due once t reaches f - a,
//	      its early-refresh instant; "-1": due now; "0": not due),
//	      hard-below, soft-below
//
// hard-below and soft-below come from the read-side check of tags in other
// slots (Cluster): an entry whose guard is below them is dropped or stale.
//
// Reply: {"uninit"[, 1]} or {"ok", state, lease, held, epoch, seq|false,
// now, version|false, corrupt, [e, q, g, c, f, s, x, d, n, tg, v,
// tk|false, a|false]}; state 0 miss, 1 fresh, 2 stale. Standalone gives the
// sequence, Cluster the key's version and the entry's tag keys. corrupt
// is 1 when the script dropped or repaired something that did not parse
// (the reply is then a miss), and on Cluster, when that was a tag whose
// versions do not parse, the tag's key, for the client to repair.
//
// Corruption, key by key: an entry that does not parse is deleted; a lease
// that does not parse is deleted (nobody holds it); the key's version (read
// on Cluster, and standalone when the lease is granted, so that the ticket
// is above its repair) and the versions of the entry's tags are repaired
// as "very high" (see repair); a marker that does not parse is a new epoch.
var lookupScript = redis.NewScript(luaPrelude + lookupSrc)

const lookupSrc = `
local cluster = ARGV[1] == '1'
local E, seq, corrupt = epoch(KEYS[4], ARGV[3], ARGV[4], cluster)
if not E then return uninit(corrupt) end
local t = now(tonumber(ARGV[2]))
local ent = redis.pcall('HMGET', KEYS[1], 'e', 'q', 'g', 'c', 'f', 's', 'x', 'd', 'n', 'k', 'tg', 'tk', 'v', 'a')
local p, badtag = nil, nil
if bad(ent) then
  redis.call('DEL', KEYS[1])
  corrupt = true
else
  for i = 1, 14 do
    if ent[i] then
      p = entry(ent, KEYS[1], cluster)
      if not p then
        redis.call('DEL', KEYS[1])
        corrupt = true
      end
      break
    end
  end
end
local state, has = 0, false
if p then
  local drop = p.e ~= E or p.g < tonumber(ARGV[8])
  local soft = ent[10] ~= false or p.g < tonumber(ARGV[9])
  if not drop then
    for _, tk in ipairs(p.tks) do
      local h, s = tagv(tk)
      if not h then
        -- Standalone the tag is repaired here. On Cluster the script
        -- cannot be sure that tk is in its slot (a damaged tk may name a
        -- tag of another slot, which the server may or may not let it
        -- read): it names the tag in its reply, and the client repairs
        -- it in the tag's own slot, then looks up again.
        if cluster then
          badtag = tk
        else
          repair(tk, KEYS[4], true, false)
        end
        corrupt, drop = true, true
        break
      end
      if h > p.g then drop = true break end
      if s > p.g then soft = true end
    end
  end
  if drop then
    redis.call('DEL', KEYS[1])
  elseif t < math.max(p.s, p.x) then
    has = true
    if t < p.f and not soft then state = 1
    elseif t < p.s then state = 2
    end
  end
end
local lease, held = 0, 0
local try = state ~= 1
if state == 1 then
  -- The instant is the entry's, drawn once by its filler: every lookup
  -- after it, from any process, agrees that it is due, and the lease
  -- below lets one of them refresh it.
  local early = ARGV[7]
  try = early == '-1' or early == '1' and p.a > 0 and t >= p.f - p.a
end
if try then
  local cur = redis.pcall('GET', KEYS[3])
  local holder, exp, tomb = nil, 0, nil
  if not bad(cur) and cur then
    tomb = tombstone(cur)
    if not tomb then holder, exp = parselease(cur) end
  end
  if cur and not holder and not tomb then
    redis.call('DEL', KEYS[3])
    corrupt = true
  end
  local live = holder ~= nil and exp > t
  if live and holder ~= ARGV[5] then
    held = 1
  elseif tomb and tomb == ARGV[5] then
    -- This token's lease was released: this lookup reached Redis after
    -- its caller gave up on it (and its Cache gave the lease up). Nobody
    -- would load with the lease; the key stays free for the others.
  elseif ARGV[5] ~= '0' then
    -- Granted, or renewed for the token that holds it (a caller taking
    -- back a lease its process abandoned): the lease runs from now.
    local ttl = tonumber(ARGV[6])
    redis.call('SET', KEYS[3], ARGV[5] .. ':' .. fmt(t + ttl), 'PX', math.max(1, math.ceil(ttl / 1000)))
    lease = 1
  end
end
local ver = false
if cluster or lease == 1 then
  local v = version(KEYS[2])
  if not v then
    if not repair(KEYS[2], KEYS[4], false, cluster) then return uninit(true) end
    corrupt = true
    v = version(KEYS[2])
  end
  if cluster then ver = fmt(v) end
end
if corrupt and has then
  -- A lookup that found corrupt data is a miss, whatever it found first.
  redis.call('DEL', KEYS[1])
  has, state = false, 0
end
if cluster then
  seq = false
elseif corrupt then
  seq = redis.call('HGET', KEYS[4], 'n') or '0'
else
  seq = seq or '0'
end
local c = 0
if badtag then c = badtag elseif corrupt then c = 1 end
if held == 1 and ARGV[5] ~= '0' then waiting(KEYS[3]) end
local out = {'ok', state, lease, held, E, seq, fmt(t), ver, c}
if has then
  for _, i in ipairs({1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13}) do out[#out + 1] = ent[i] end
  if cluster then out[#out + 1] = ent[12] else out[#out + 1] = false end
  out[#out + 1] = ent[14]
end
return out
`

// fillScript is the conditional write.
//
//	KEYS: entry, version, lease, marker, tag keys...
//	ARGV: cluster, offset µs, candidate epoch, check replid, ticket epoch,
//	      ticket seq, token, value, negative, TTL µs, stale µs, error µs,
//	      load duration ns, set ("0"; standalone "1"; Cluster: the seq of
//	      the Set), tags (encodeList), refused ("1": the client's
//	      pre-check of tags in other slots refused the fill), keep old
//	      ("1": a refused Set leaves the older entry), tags to check (how
//	      many of the tag keys, from the first), early-refresh lead µs
//	      (at most the TTL; 0: never early)
//
// The tag keys are those in the entry's slot (all of them, standalone);
// the caller checked the others before. A version or tag version that does
// not parse is repaired as "very high" (see repair), which refuses the
// fill. Reply: {"uninit"[, 1]} or {"ok", accepted, seq}.
//
// A refused Set drops the key's entry unless that entry's guard is above
// the Set's ticket (in the ticket's epoch): the writer changed the source
// after its ticket, so an entry loaded earlier is older than the write
// that was refused, and serving it as fresh would undo the write. A newer
// entry (its load took its ticket after the Set's) stays.
var fillScript = redis.NewScript(luaPrelude + fillSrc)

const fillSrc = `
local cluster = ARGV[1] == '1'
local E, _, corrupt = epoch(KEYS[4], ARGV[3], ARGV[4], cluster)
if not E then return uninit(corrupt) end
local t = now(tonumber(ARGV[2]))
local t0 = tonumber(ARGV[6])
local first = 5
local ok = ARGV[5] == E and ARGV[16] ~= '1'
if ok then
  local kv = version(KEYS[2])
  if not kv then
    if not repair(KEYS[2], KEYS[4], false, cluster) then return uninit(true) end
    ok = false
  elseif kv > t0 then
    ok = false
  end
end
if ok then
  for i = first, math.min(#KEYS, first + tonumber(ARGV[18]) - 1) do
    local h, s = tagv(KEYS[i])
    if not h then
      if not repair(KEYS[i], KEYS[4], true, cluster) then return uninit(true) end
      ok = false
      break
    end
    if s > t0 then ok = false break end
  end
end
local q = t0
if ok then
  if ARGV[14] ~= '0' then
    if cluster then q = tonumber(ARGV[14]) else q = nextseq(KEYS[4]) end
    if version(KEYS[2]) < q then redis.call('SET', KEYS[2], fmt(q)) end
  end
  local fr = t + tonumber(ARGV[10])
  local st, er = fr + tonumber(ARGV[11]), fr + tonumber(ARGV[12])
  local tk = {}
  for i = first, #KEYS do tk[#tk + 1] = #KEYS[i] .. ':' .. KEYS[i] end
  redis.call('DEL', KEYS[1])
  local f = {'e', E, 'q', fmt(q), 'g', fmt(t0), 'c', fmt(t), 'f', fmt(fr), 's', fmt(st), 'x', fmt(er),
    'd', ARGV[13], 'tg', ARGV[15], 'tk', table.concat(tk), 'a', ARGV[19]}
  if ARGV[9] == '1' then
    f[#f + 1] = 'n'; f[#f + 1] = '1'
  else
    f[#f + 1] = 'v'; f[#f + 1] = ARGV[8]
  end
  redis.call('HSET', KEYS[1], unpack(f))
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((math.max(st, er) - t) / 1000)))
elseif ARGV[14] ~= '0' and ARGV[17] ~= '1' then
  local m = redis.pcall('HMGET', KEYS[1], 'e', 'g')
  if bad(m) or not (m[1] == ARGV[5] and int(m[2]) and int(m[2]) > t0) then
    redis.call('DEL', KEYS[1])
  end
end
release(KEYS[3], ARGV[7])
ended(KEYS[3], ARGV[14] ~= '0')
local r = 0
if ok then r = 1 end
return {'ok', r, fmt(q)}
`

// releaseScript gives up a lease and leaves a tombstone, "~token", in its
// place for a while (unless another token holds the lease, or left its
// own tombstone): a lookup with the token that reaches Redis after the
// release, a request delayed past its caller's deadline, then finds the
// key free for every token but its own, instead of taking a lease nobody
// would use.
//
//	KEYS: lease. ARGV: token, tombstone TTL ms.
var releaseScript = redis.NewScript(luaPrelude + releaseSrc)

const releaseSrc = `
local tok = ARGV[1]
if tok == '0' then return 1 end
local cur = redis.pcall('GET', KEYS[1])
local mine = not cur or bad(cur)
if not mine and not tombstone(cur) then
  local holder = parselease(cur)
  mine = holder == nil or holder == tok
end
if mine then redis.call('SET', KEYS[1], '~' .. tok, 'PX', ARGV[2]) end
ended(KEYS[1], false)
return 1
`

// invalidateScript applies one invalidation to the keys and tags of one
// slot (standalone: all of them, and it takes the seq itself).
//
//	KEYS: marker (standalone: it holds the sequence), entry, version and
//	      lease of each key..., tag keys...
//	ARGV: cluster, candidate epoch, check replid, seq (Cluster), soft,
//	      number of keys, keep leases ("1": leave the keys' leases in
//	      place, see hooks.LeaseOutlivesInvalidation)
//
// It breaks the lease of each key, hard or soft: the load that holds it
// took its ticket before s and its fill will be refused, so the next
// lookup that asks for the lease is granted it at once rather than waiting
// for a doomed load. The holder's later Fill is refused by the version and
// its later Release finds another token's lease (left alone) or none; tags
// name no lease and leave leases alone.
//
// Only a lease is deleted, never a released token's tombstone "~token".
// The tombstone keeps a lookup with that token, delayed past its caller's
// give-up, from taking a lease nobody would use; deleting it here would
// reopen that hole. A broken lease needs no tombstone of its own: its
// holder did not give up (it is still loading, or has lost the lease's
// reply and will look up again with the same token to take it back), so a
// later lookup with its token is a live caller, granted a fresh lease with
// a ticket that is at least s, whose load may fill. When the holder does
// give up, its Release leaves the tombstone as after any release.
//
// On Cluster, s is taken before this script runs, and a lookup of the key
// reads its ticket after the script that granted its lease: a lease granted
// between the two steps may go with a ticket at least s, whose load is not
// doomed. Breaking it costs one more load of the key (both fills are
// accepted), never a stale fill.
//
// Whatever is under the names: an entry that does not parse is deleted
// (even by a soft invalidation). A version or tag version that does not
// parse is, standalone, overwritten with s, which this script just took
// from the sequence and is thus as high as a repair would make it (tag
// versions hard and soft, even by a soft invalidation: the lost hard
// version may have dropped entries that a soft one would keep). On Cluster
// s was taken before this script ran and a later invalidation may have
// written a higher version since: the script repairs the key as "very
// high" (see repair) and replies uninit; the client fences the slot and
// runs it again.
//
// Reply: {"uninit"[, 1]} or {"ok", seq}.
var invalidateScript = redis.NewScript(luaPrelude + invalidateSrc)

const invalidateSrc = `
local cluster = ARGV[1] == '1'
local E, _, corrupt = epoch(KEYS[1], ARGV[2], ARGV[3], cluster)
if not E then return uninit(corrupt) end
local first, s = 2, 0
if cluster then
  s = tonumber(ARGV[4])
else
  s = nextseq(KEYS[1])
end
local ss = fmt(s)
local soft = ARGV[5] == '1'
local nk = tonumber(ARGV[6])
local keepLeases = ARGV[7] == '1'
for i = 0, nk - 1 do
  local ek, vk, lk = KEYS[first + 3 * i], KEYS[first + 3 * i + 1], KEYS[first + 3 * i + 2]
  local kv = version(vk)
  if not kv and cluster then
    repair(vk, KEYS[1], false, cluster)
    return uninit(true)
  end
  if not kv or kv < s then redis.call('SET', vk, ss) end
  local m = redis.pcall('HMGET', ek, 'g', 'e')
  if bad(m) or not (int(m[1]) and m[2]) then
    redis.call('DEL', ek) -- missing, or corrupt
  elseif int(m[1]) < s or m[2] ~= E then
    if soft and m[2] == E then
      redis.call('HSET', ek, 'k', ss)
    else
      redis.call('DEL', ek)
    end
  end
  if not keepLeases then
    -- A lease that does not parse is left for the next lookup, which
    -- deletes it and reports it corrupt.
    local cur = redis.pcall('GET', lk)
    if not bad(cur) and cur and parselease(cur) then redis.call('DEL', lk) end
  end
end
for i = first + 3 * nk, #KEYS do
  local h, sv = tagv(KEYS[i])
  if not h then
    if cluster then
      repair(KEYS[i], KEYS[1], true, cluster)
      return uninit(true)
    end
    redis.call('DEL', KEYS[i])
    redis.call('HSET', KEYS[i], 's', ss, 'h', ss)
  else
    if sv < s then redis.call('HSET', KEYS[i], 's', ss) end
    if not soft and h < s then redis.call('HSET', KEYS[i], 'h', ss) end
  end
end
changed(KEYS, first, nk)
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
  local m = redis.pcall('HMGET', mk, 'e', 'r', 'f')
  if bad(m) or not (int(m[1]) and m[2] == rid and (not m[3] or int(m[3]))) then
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
// A marker or tag key that does not parse is deleted with the marker (the
// tag's versions repaired as "very high", see repair), and the reply is
// uninit: the client fences the slot.
//
// Reply: {"uninit"[, 1]} or {"ok", max hard version, max version, floor}.
var tagCheckScript = redis.NewScript(luaPrelude + tagCheckSrc)

const tagCheckSrc = `
local m = redis.pcall('HMGET', KEYS[1], 'e', 'r', 'f')
if bad(m) or (m[1] and not int(m[1])) or (m[3] and not int(m[3])) then
  redis.call('DEL', KEYS[1])
  return uninit(true)
end
if not m[1] or (ARGV[1] == '1' and m[2] ~= replid()) then return uninit(false) end
local h, s = 0, 0
for i = 2, #KEYS do
  local th, ts = tagv(KEYS[i])
  if not th then
    repair(KEYS[i], KEYS[1], true, true)
    return uninit(true)
  end
  h, s = math.max(h, th), math.max(s, ts)
end
return {'ok', fmt(h), fmt(s), m[3] or '0'}
`
