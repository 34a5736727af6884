package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each one is a single atomic step on one node (on
// Cluster, on one slot). Numbers that may exceed 14 digits (times in µs,
// sequence numbers) are written with fmt, never tostring, which would use
// an exponent. Numbers are kept below 2^53, exact in Lua and in Go.
//
// The layout of what they read and write is in keys.go and entry.go. A
// warm hit runs none of them: it is an MGET that the client checks (see
// hit.go), by the same rules. Every script that reads an epoch marker
// compares the replication ID it names with the rid the client passes:
// the server's, as the client verified it, or '' when the failover check
// is off. A client that has not verified it since its last new connection
// passes '?': the script then reads the ID itself (INFO, which a verified
// call spares), refuses a server that is not a master, and reports the ID
// in its reply for the client to keep (see node.go).

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

-- serverid returns the replication ID that epoch markers must name, and
-- whether it read it here: arg is the client's (verified, or '' with the
-- check off), or '?', and then the script asks the server, which must be
-- a master.
local function serverid(arg)
  if arg ~= '?' then return arg, false end
  local info = redis.call('INFO', 'replication')
  if string.match(info, 'role:(%a+)') ~= 'master' then
    error({err = 'READONLY redisstore: the server is not a master'})
  end
  return string.match(info, 'master_replid:(%w+)') or '', true
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

-- nextseq advances the invalidation sequence, string key sk. It never goes
-- back, even if the key is lost: a new sequence starts a day ahead of the
-- server's clock (unoffset), and each step is at least that clock. A
-- sequence that does not parse counts as lost.
local function nextseq(sk)
  local t = redis.call('TIME')
  local wall = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cur = redis.pcall('GET', sk)
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
  redis.call('SET', sk, fmt(s))
  return s
end

-- parsemarker parses an epoch marker, "epoch:floor:replid": the epoch and
-- the floor as numbers, and the replication ID; nil when it does not parse.
local function parsemarker(m)
  if type(m) ~= 'string' then return nil end
  local e, f, r = string.match(m, '^(%d+):(%d+):(%w*)$')
  e, f = int(e), int(f)
  if not (e and f) then return nil end
  return e, f, r
end

-- epoch returns the epoch named by marker mk, its floor, and whether the
-- marker was corrupt. A marker that is missing (a flushed or restarted
-- server) or written by another replication history than rid names (a
-- failover: the promoted replica has a new replication ID) means a new
-- epoch: standalone creates it from the candidate cand (the sequence sk
-- advances); on Cluster the caller must first fence the slot, so epoch
-- returns false. A marker that does not parse (a key of another type, an
-- epoch or floor that is not a number) is deleted and treated as missing:
-- a new epoch, in which nothing of the old one is trusted.
local function epoch(mk, cand, rid, cluster, sk)
  local m = redis.pcall('GET', mk)
  local corrupt = false
  local e, f, r = nil, nil, nil
  if bad(m) then
    corrupt = true
  elseif m then
    e, f, r = parsemarker(m)
    corrupt = not e
  end
  if corrupt then redis.call('DEL', mk) end
  if e and (rid == '' or r == rid) then return e, f, false end
  if cluster then return false, nil, corrupt end
  -- The sequence goes on (or restarts ahead, if it was lost), so that the
  -- new epoch's tickets are above the versions kept from before.
  nextseq(sk)
  redis.call('SET', mk, cand .. ':0:' .. rid)
  return tonumber(cand), 0, corrupt
end

-- repair replaces a version that does not parse: a key's version (vk) or
-- a tag's versions ("h:s"). Its true value is unknown, so it is repaired
-- as "very high", never as zero: zero would accept a fill whose load began
-- before the invalidation the lost value recorded, and serve an entry
-- filled before it. Standalone it becomes a new sequence number (sk),
-- above every ticket issued so far: it fences every load and entry the
-- lost value could have fenced, and no load that takes its ticket after
-- the repair. On Cluster the script cannot reach the sequence: it deletes
-- the key and the slot's epoch marker mk, as if the node had lost the
-- slot's data, and returns false; the caller replies uninit, and the
-- client fences the slot (a new epoch, with a floor taken after the
-- repair, which tags of the slot count as a hard version).
local function repair(k, mk, tag, cluster, sk)
  redis.call('DEL', k)
  if cluster then
    redis.call('DEL', mk)
    return false
  end
  local s = fmt(nextseq(sk))
  if tag then redis.call('SET', k, s .. ':' .. s) else redis.call('SET', k, s) end
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

-- tagv reads the versions of tag key tk, "h:s": its last hard
-- invalidation and its last one (0 when absent); nil when they do not
-- parse.
local function tagv(tk)
  local v = redis.pcall('GET', tk)
  if bad(v) then return nil end
  if not v then return 0, 0 end
  local h, s = string.match(v, '^(%d+):(%d+)$')
  h, s = int(h), int(s)
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

-- The entry (see entry.go): a fixed part of HEAD bytes, the tag list and
-- the tag-key list after their lengths, then the value.
local HEAD = 76
local LIM = 9007199254740992

-- head parses the fixed part of entry b: the flags and the nine numbers;
-- nil when b is not an entry of this format.
local function head(b)
  if type(b) ~= 'string' or #b < HEAD or string.sub(b, 1, 3) ~= 'pr\1' then return nil end
  local fl = string.byte(b, 4)
  if fl > 3 then return nil end
  local e, g, a, d, q, c, f, s, x = struct.unpack('>i8i8i8i8i8i8i8i8i8', b, 5)
  for _, n in ipairs({e, g, a, d, q}) do
    if n < 0 or n >= LIM then return nil end
  end
  for _, n in ipairs({c, f, s, x}) do
    if n <= -LIM or n >= LIM then return nil end
  end
  return {fl = fl, e = e, g = g, a = a, d = d, q = q, c = c, f = f, s = s, x = x, soft = fl >= 2}
end

-- entry parses entry b, under key name k. It returns nil when the fixed
-- part does not parse, when the lists do not fit or do not decode, when a
-- negative entry has a value, or when the tag keys are not those of the
-- tags (all of them standalone; a subset on Cluster, where the client
-- checks that the subset is those of the key's slot): a wrong tag key
-- would skip the check of a tag. Otherwise it returns the parsed fields
-- and the tag keys (tks).
local function entry(b, k, cluster)
  local p = head(b)
  if not p or #b < HEAD + 8 then return nil end
  local lt = struct.unpack('>I4', b, HEAD + 1)
  local o = HEAD + 4 + lt
  if o + 4 > #b then return nil end
  local lk = struct.unpack('>I4', b, o + 1)
  local v = o + 4 + lk
  if v > #b then return nil end
  if p.fl % 2 == 1 and v < #b then return nil end
  local tk = string.sub(b, o + 5, v)
  local tags, tks = split(string.sub(b, HEAD + 5, o)), split(tk)
  if not (tags and tks) then return nil end
  local want, set = tagkeys(k, tags)
  if cluster then
    for _, t in ipairs(tks) do
      if not set[t] then return nil end
    end
  elseif tk ~= want then
    return nil
  end
  p.tks = tks
  return p
end

-- parsefresh parses a fresh marker, "instant" or "instant:token" (the
-- token that holds the early-refresh lease while that refresh runs); nil
-- when it does not parse.
local function parsefresh(m)
  if type(m) ~= 'string' then return nil end
  local x, tok = string.match(m, '^(-?%d+):(%d+)$')
  if not x then x = m end
  x = sint(x)
  if not x or tok and #tok > 20 then return nil end
  return x, tok
end

-- setfresh sets fresh marker fk to instant x (and lease token tok, if
-- any), for the time from t to x.
local function setfresh(fk, x, tok, t)
  local v = fmt(x)
  if tok then v = v .. ':' .. tok end
  redis.call('SET', fk, v, 'PX', math.max(1, math.ceil((x - t) / 1000)))
  return v
end
`

// lookupScript reads an entry, judges it, and takes the lease if asked.
//
//	KEYS: entry, version, lease, marker, fresh marker, sequence (standalone)
//	ARGV: cluster, offset µs, candidate epoch, rid, token, lease TTL µs,
//	      early ("1": a fresh entry is due once t reaches f - a, its
//	      early-refresh instant; "-1": due now; "0": not due),
//	      hard-below, soft-below
//
// hard-below and soft-below come from the read-side check of tags in other
// slots (Cluster): an entry whose guard is below them is dropped or stale.
//
// The fresh marker is the hit path's: while it lives, the client may serve
// the entry from an MGET without this script. The script keeps it so: an
// entry that it finds fresh gets a marker until the entry's early-refresh
// instant (or, without one, its end of freshness); once that instant has
// come, the marker lasts while a lease is held, until the lease's expiry
// at most, and names the lease's token: the refresh is under way, and the
// client answers a lookup that asks for early refresh as this script
// would, fresh and held (or, for the holder's own token, leaves it to the
// script, which renews the lease). A release of that token drops it. With
// no lease held, there is no marker: the next lookup that asks for early
// refresh must reach this script to take the lease. Anything else (stale,
// soft-invalidated, dropped, missing) has no marker.
//
// Reply: {"uninit"[, 1]} or {"ok", state, lease, held, epoch, seq|false,
// now, version|false, corrupt, rid|false[, entry]}; state 0 miss, 1 fresh,
// 2 stale. Standalone gives the sequence, Cluster the key's version.
// corrupt is 1 when the script dropped or repaired something that did not
// parse (the reply is then a miss), and on Cluster, when that was a tag
// whose versions do not parse, the tag's key, for the client to repair.
// rid is the server's replication ID when the script read it.
//
// Corruption, key by key: an entry that does not parse is deleted; a fresh
// marker that does not parse, or names an instant after the entry's
// freshness, is deleted; a lease that does not parse is deleted (nobody
// holds it); the key's version (read on Cluster, and standalone when the
// lease is granted, so that the ticket is above its repair) and the
// versions of the entry's tags are repaired as "very high" (see repair);
// a marker that does not parse is a new epoch; a sequence that does not
// parse restarts ahead (see nextseq), and is not the key's data.
var lookupScript = redis.NewScript(luaPrelude + lookupSrc)

const lookupSrc = `
local cluster = ARGV[1] == '1'
local sk = nil
if not cluster then sk = KEYS[6] end
local rid, checked = serverid(ARGV[4])
local E, _, corrupt = epoch(KEYS[4], ARGV[3], rid, cluster, sk)
if not E then return uninit(corrupt) end
local t = now(tonumber(ARGV[2]))
local raw = redis.pcall('GET', KEYS[1])
local p, badtag = nil, nil
if bad(raw) then
  redis.call('DEL', KEYS[1])
  corrupt, raw = true, false
elseif raw then
  p = entry(raw, KEYS[1], cluster)
  if not p then
    redis.call('DEL', KEYS[1])
    corrupt = true
  end
end
local fm = redis.pcall('GET', KEYS[5])
local fx, ftok = nil, nil
if bad(fm) then
  fm = nil
elseif fm then
  fx, ftok = parsefresh(fm)
end
if fm ~= false and not (fx and (not p or fx <= p.f)) then
  -- Of another type, not a marker, or later than the entry's freshness:
  -- the lookup is a miss.
  redis.call('DEL', KEYS[1], KEYS[5])
  corrupt, fm, fx, ftok, p = true, false, nil, nil, nil
end
local state, has = 0, false
if p then
  local drop = p.e ~= E or p.g < tonumber(ARGV[8])
  local soft = p.soft or p.g < tonumber(ARGV[9])
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
          repair(tk, KEYS[4], true, false, sk)
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
local lease, held, lexp, lholder = 0, 0, nil, nil
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
    held, lexp, lholder = 1, exp, holder
  elseif tomb and tomb == ARGV[5] then
    -- This token's lease was released: this lookup reached Redis after
    -- its caller gave up on it (and its Cache gave the lease up). Nobody
    -- would load with the lease; the key stays free for the others.
  elseif ARGV[5] ~= '0' then
    -- Granted, or renewed for the token that holds it (a caller taking
    -- back a lease its process abandoned): the lease runs from now.
    local ttl = tonumber(ARGV[6])
    redis.call('SET', KEYS[3], ARGV[5] .. ':' .. fmt(t + ttl), 'PX', math.max(1, math.ceil(ttl / 1000)))
    lease, lexp, lholder = 1, t + ttl, ARGV[5]
  end
end
local ver = false
if cluster or lease == 1 then
  local v = version(KEYS[2])
  if not v then
    if not repair(KEYS[2], KEYS[4], false, cluster, sk) then return uninit(true) end
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
local kx, ktok = nil, nil
if state == 1 then
  if p.a == 0 then kx = p.f
  elseif t < p.f - p.a then kx = p.f - p.a
  elseif lexp then kx, ktok = math.min(p.f, lexp), lholder
  elseif not try then kx, ktok = fx, ftok -- not asked for early refresh: as it was
  end
end
if kx and kx > t then
  if fx ~= kx or ftok ~= ktok then setfresh(KEYS[5], kx, ktok, t) end
elseif fm then
  redis.call('DEL', KEYS[5])
end
local seq = false
if not cluster then
  local v = redis.pcall('GET', sk)
  if not bad(v) then v = int(v) else v = nil end
  seq = fmt(v or nextseq(sk))
end
local c = 0
if badtag then c = badtag elseif corrupt then c = 1 end
if held == 1 and ARGV[5] ~= '0' then waiting(KEYS[3]) end
local out = {'ok', state, lease, held, fmt(E), seq, fmt(t), ver, c, checked and rid}
if has then out[11] = raw end
return out
`

// fillScript is the conditional write.
//
//	KEYS: entry, version, lease, marker, fresh marker, sequence
//	      (standalone), tag keys...
//	ARGV: cluster, offset µs, candidate epoch, rid, ticket epoch, ticket
//	      seq, token, the entry's head and tail (see entry.go: the fill
//	      writes the ticket seq and the instants between them), TTL µs,
//	      stale µs, error µs, set ("0"; standalone "1"; Cluster: the seq
//	      of the Set), refused ("1": the client's pre-check of tags in
//	      other slots refused the fill), keep old ("1": a refused Set
//	      leaves the older entry), tags to check (how many of the tag
//	      keys, from the first), early-refresh lead µs (at most the TTL;
//	      0: never early), handoff size (standalone: the largest entry
//	      that the wake-up of an accepted fill carries, see ended)
//
// The tag keys are those in the entry's slot (all of them, standalone);
// the caller checked the others before. A version or tag version that does
// not parse is repaired as "very high" (see repair), which refuses the
// fill. An accepted fill writes the fresh marker until the entry's
// early-refresh instant, or its end of freshness. Reply: {"uninit"[, 1]}
// or {"ok", accepted, seq, rid|false}.
//
// A refused Set drops the key's entry unless that entry's guard is above
// the Set's ticket (in the ticket's epoch): the writer changed the source
// after its ticket, so an entry loaded earlier is older than the write
// that was refused, and serving it as fresh would undo the write. A newer
// entry (its load took its ticket after the Set's) stays.
var fillScript = redis.NewScript(luaPrelude + fillSrc)

const fillSrc = `
local cluster = ARGV[1] == '1'
local first, sk = 6, nil
if not cluster then first, sk = 7, KEYS[6] end
local rid, checked = serverid(ARGV[4])
local E, _, corrupt = epoch(KEYS[4], ARGV[3], rid, cluster, sk)
if not E then return uninit(corrupt) end
local t = now(tonumber(ARGV[2]))
local t0 = tonumber(ARGV[6])
local ok = tonumber(ARGV[5]) == E and ARGV[14] ~= '1'
if ok then
  local kv = version(KEYS[2])
  if not kv then
    if not repair(KEYS[2], KEYS[4], false, cluster, sk) then return uninit(true) end
    ok = false
  elseif kv > t0 then
    ok = false
  end
end
if ok then
  for i = first, math.min(#KEYS, first + tonumber(ARGV[16]) - 1) do
    local h, s = tagv(KEYS[i])
    if not h then
      if not repair(KEYS[i], KEYS[4], true, cluster, sk) then return uninit(true) end
      ok = false
      break
    end
    if s > t0 then ok = false break end
  end
end
local q = t0
local carry = nil
if ok then
  if ARGV[13] ~= '0' then
    if cluster then q = tonumber(ARGV[13]) else q = nextseq(sk) end
    if version(KEYS[2]) < q then redis.call('SET', KEYS[2], fmt(q)) end
  end
  local fr = t + tonumber(ARGV[10])
  local st, er = fr + tonumber(ARGV[11]), fr + tonumber(ARGV[12])
  local ev = ARGV[8] .. struct.pack('>i8i8i8i8i8', q, t, fr, st, er) .. ARGV[9]
  redis.call('SET', KEYS[1], ev, 'PX', math.max(1, math.ceil((math.max(st, er) - t) / 1000)))
  if not cluster and #ev <= tonumber(ARGV[18]) then carry = ev end
  local x = fr - tonumber(ARGV[17])
  if x > t then setfresh(KEYS[5], x, nil, t) else redis.call('DEL', KEYS[5]) end
  -- The versions of the entry's tags exist from now on: a hit reads them
  -- by MGET, which answers nothing for a key of another type, so nothing
  -- must also mean "not as this script left it".
  for i = first, #KEYS do redis.call('SET', KEYS[i], '0:0', 'NX') end
elseif ARGV[13] ~= '0' and ARGV[15] ~= '1' then
  local h = head(redis.pcall('GETRANGE', KEYS[1], 0, HEAD - 1))
  if not (h and h.e == tonumber(ARGV[5]) and h.g > t0) then
    redis.call('DEL', KEYS[1], KEYS[5])
  end
end
release(KEYS[3], ARGV[7])
if carry then
  -- The wake-up's 'f' item: the sequence now, then the entry. A lookup
  -- made at this instant would find them (see Store.WatchFill).
  local sq = redis.pcall('GET', sk)
  if bad(sq) or not int(sq) then
    carry = nil
  else
    carry = sq .. ':' .. carry
    carry = 'f' .. #carry .. ':' .. carry
  end
end
ended(KEYS[3], ARGV[13] ~= '0', carry)
local r = 0
if ok then r = 1 end
return {'ok', r, fmt(q), checked and rid}
`

// releaseScript gives up a lease and leaves a tombstone, "~token", in its
// place for a while (unless another token holds the lease, or left its
// own tombstone): a lookup with the token that reaches Redis after the
// release, a request delayed past its caller's deadline, then finds the
// key free for every token but its own, instead of taking a lease nobody
// would use.
//
// The fresh marker that names the token (see lookupScript) goes too: the
// entry is due for early refresh again.
//
//	KEYS: lease, fresh marker. ARGV: token, tombstone TTL ms.
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
local m = redis.pcall('GET', KEYS[2])
if not bad(m) then
  local _, mt = parsefresh(m)
  if mt == tok then redis.call('DEL', KEYS[2]) end
end
ended(KEYS[1], false)
return 1
`

// invalidateScript applies one invalidation to the keys and tags of one
// slot (standalone: all of them, and it takes the seq itself).
//
//	KEYS: marker, sequence (standalone), entry, version, lease and fresh
//	      marker of each key..., tag keys...
//	ARGV: cluster, candidate epoch, rid, seq (Cluster), soft, number of
//	      keys, keep leases ("1": leave the keys' leases in place, see
//	      hooks.LeaseOutlivesInvalidation)
//
// It drops each key's fresh marker with the entry (hard), or marks the
// entry soft-invalidated and drops the marker (soft): from then on no MGET
// serves it, and the lookup script judges it.
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
// Whatever is under the names: an entry whose fixed part does not parse
// is deleted (even by a soft invalidation). A version or tag version that
// does not parse is, standalone, overwritten with s, which this script
// just took from the sequence and is thus as high as a repair would make
// it (tag versions hard and soft, even by a soft invalidation: the lost
// hard version may have dropped entries that a soft one would keep). On
// Cluster s was taken before this script ran and a later invalidation may
// have written a higher version since: the script repairs the key as "very
// high" (see repair) and replies uninit; the client fences the slot and
// runs it again.
//
// Reply: {"uninit"[, 1]} or {"ok", seq, rid|false}.
var invalidateScript = redis.NewScript(luaPrelude + invalidateSrc)

const invalidateSrc = `
local cluster = ARGV[1] == '1'
local first, sk = 2, nil
if not cluster then first, sk = 3, KEYS[2] end
local rid, checked = serverid(ARGV[3])
local E, _, corrupt = epoch(KEYS[1], ARGV[2], rid, cluster, sk)
if not E then return uninit(corrupt) end
local s = 0
if cluster then
  s = tonumber(ARGV[4])
else
  s = nextseq(sk)
end
local ss = fmt(s)
local soft = ARGV[5] == '1'
local nk = tonumber(ARGV[6])
local keepLeases = ARGV[7] == '1'
for i = 0, nk - 1 do
  local ek, vk, lk, fk = KEYS[first + 4 * i], KEYS[first + 4 * i + 1], KEYS[first + 4 * i + 2], KEYS[first + 4 * i + 3]
  local kv = version(vk)
  if not kv and cluster then
    repair(vk, KEYS[1], false, cluster, sk)
    return uninit(true)
  end
  if not kv or kv < s then redis.call('SET', vk, ss) end
  local h = head(redis.pcall('GETRANGE', ek, 0, HEAD - 1))
  if not h then
    redis.call('DEL', ek, fk) -- missing, or corrupt
  elseif h.g < s or h.e ~= E then
    if soft and h.e == E then
      if not h.soft then redis.call('SETRANGE', ek, 3, string.char(h.fl + 2)) end
    else
      redis.call('DEL', ek)
    end
    redis.call('DEL', fk)
  end
  if not keepLeases then
    -- A lease that does not parse is left for the next lookup, which
    -- deletes it and reports it corrupt.
    local cur = redis.pcall('GET', lk)
    if not bad(cur) and cur and parselease(cur) then redis.call('DEL', lk) end
  end
end
for i = first + 4 * nk, #KEYS do
  local h, sv = tagv(KEYS[i])
  if not h then
    if cluster then
      repair(KEYS[i], KEYS[1], true, cluster, sk)
      return uninit(true)
    end
    redis.call('SET', KEYS[i], ss .. ':' .. ss)
  elseif sv < s or not soft and h < s then
    if not soft then h = math.max(h, s) end
    redis.call('SET', KEYS[i], fmt(h) .. ':' .. fmt(math.max(sv, s)))
  end
end
changed(KEYS, first, nk)
return {'ok', ss, checked and rid}
`

// Cluster only.

// seqScript advances the sequence. KEYS: the sequence. Reply: the new seq.
var seqScript = redis.NewScript(luaPrelude + seqSrc)

const seqSrc = `
return fmt(nextseq(KEYS[1]))
`

// fenceScript fences every slot given whose marker is missing or from
// another replication history: a new epoch for the slot, with floor the
// sequence number the caller took after it saw a slot uninitialised. No
// ticket below the floor is trusted against the slot's versions. It runs
// once per node, over all the node's slots (hence the flag), and reads
// the node's replication ID itself: it is the step that writes it.
//
//	KEYS: the first marker. ARGV: candidate epoch, floor, the other
//	markers. Reply: slots fenced.
//
// Only one marker is a declared key: Cluster routes a script by its keys,
// which must share a slot even with the flag; the flag lets the script
// reach the node's other slots.
var fenceScript = redis.NewScript("#!lua flags=allow-cross-slot-keys\n" + luaPrelude + fenceSrc)

const fenceSrc = `
local info = redis.call('INFO', 'replication')
local rid = string.match(info, 'master_replid:(%w+)') or ''
local n = 0
local function fence(mk)
  local m = redis.pcall('GET', mk)
  local e, f, r = nil, nil, nil
  if not bad(m) then e, f, r = parsemarker(m) end
  if not (e and r == rid) then
    redis.call('SET', mk, ARGV[1] .. ':' .. ARGV[2] .. ':' .. rid)
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
//	KEYS: marker, tag keys... ARGV: rid.
//
// A marker or tag key that does not parse is deleted with the marker (the
// tag's versions repaired as "very high", see repair), and the reply is
// uninit: the client fences the slot.
//
// Reply: {"uninit"[, 1]} or {"ok", max hard version, max version, floor,
// rid|false}.
var tagCheckScript = redis.NewScript(luaPrelude + tagCheckSrc)

const tagCheckSrc = `
local rid, checked = serverid(ARGV[1])
local m = redis.pcall('GET', KEYS[1])
local e, f, r = nil, nil, nil
if not bad(m) and m then e, f, r = parsemarker(m) end
if m ~= false and not e then
  redis.call('DEL', KEYS[1])
  return uninit(true)
end
if not e or (rid ~= '' and r ~= rid) then return uninit(false) end
local h, s = 0, 0
for i = 2, #KEYS do
  local th, ts = tagv(KEYS[i])
  if not th then
    repair(KEYS[i], KEYS[1], true, true)
    return uninit(true)
  end
  h, s = math.max(h, th), math.max(s, ts)
end
return {'ok', fmt(h), fmt(s), fmt(f), checked and rid}
`

// checkScript is the Store's own check of a server (see node.go): its
// clock and, when asked, its role and replication ID, read at one instant.
//
//	ARGV: "1": read the role and ID.
//
// Reply: {TIME in µs[, role, replid]}.
var checkScript = redis.NewScript(luaPrelude + checkSrc)

const checkSrc = `
local t = redis.call('TIME')
local us = fmt(tonumber(t[1]) * 1000000 + tonumber(t[2]))
if ARGV[1] ~= '1' then return {us} end
local info = redis.call('INFO', 'replication')
return {us, string.match(info, 'role:(%a+)') or '', string.match(info, 'master_replid:(%w+)') or ''}
`
