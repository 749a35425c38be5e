//! The Lua scripts of the Redis session store: each is one round trip and
//! atomic, which is what makes fencing (the epoch check and the write in
//! one step) and "SessionExpired once across the cluster" (one `DEL`
//! answers the count to one caller) hold.
//!
//! Every script gets a session's two keys as `KEYS[1]` (`P:{sid}:meta`, a
//! hash) and `KEYS[2]` (`P:{sid}:out`, a stream with one entry per batch
//! of server→client messages, fields `k` (one kind letter per message,
//! "t"/"b") and `b` (the batch's payloads in order, each as a 4-byte
//! big-endian length and its bytes), so a batch costs one `XADD` and one
//! argument whatever its size): both carry the `{sid}` hash tag, so a
//! Redis Cluster keeps them in one slot. Times come from Redis `TIME`,
//! never from a node's clock. The global expiry index (`P:expiry`) lives
//! in another slot and is written with separate commands, never from
//! here.
//!
//! An entry's ID is `<first seq>-<tag>`: the tag is [`APPENDED`] for an
//! `append` (the highest there is) and `epoch << 32 | attempt` for an
//! owner's batch, so at one seq a newer owner's batch sorts above a stale
//! owner's and an `append` above both, and a later attempt above an
//! earlier one (why: `commit`).
//!
//! Why the owner's batch never passes through Lua: Redis makes a Lua
//! string of every argument and every field it hands a script (a copy and
//! a hash of the whole blob, and another copy into the `XADD` the script
//! makes), which at 1 KiB was most of `redis-server`'s time. So the node
//! sends the batch's `XADD` itself, in one `MULTI`/`EXEC` with the
//! `commit` script that checks the epoch: the script never sees the
//! payloads, and deletes the entry again when the batch must not stand
//! (docs/SCALING.md, "The write path"). Reads (`take`, entries appended by
//! other nodes) still go through Lua: they are rare. The node's reader
//! (`blob.rs`) splits a blob.

/// The tag of an `append`'s entry ID (`<seq>-<tag>`): the highest, so an
/// owner's batch `XADD` at that seq fails (see `commit`).
pub(crate) const APPENDED: &str = "18446744073709551615";

/// Shared helpers, prepended to every script: the time in ms, the stream
/// entries holding the seqs from `from` on, and the trim of everything
/// acked up to `upto`. `TOP` (defined before it) is [`APPENDED`]:
/// `<seq>-TOP` is the last ID a seq can have.
const PRELUDE: &str = r#"
local function top(seq)
  return string.format('%d-', seq) .. TOP
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function seq_of(id)
  return tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
end
-- The entries holding the messages from <= seq <= upto, appended to acc
-- as flat (first seq, kinds, blob) triples, whole: the node's reader
-- drops the messages of the first entry before from (no Lua string per
-- message here).
local function entries(out, from, upto, acc)
  if from > upto then return acc end
  local start = from
  local prev = redis.call('XREVRANGE', out, top(from), '-', 'COUNT', 1)
  if #prev > 0 then start = seq_of(prev[1][1]) end
  local es = redis.call('XRANGE', out, string.format('%d-0', start), top(upto))
  for _, e in ipairs(es) do
    local f = e[2]
    if string.len(f[2]) > 0 then
      acc[#acc + 1] = seq_of(e[1])
      acc[#acc + 1] = f[2]
      acc[#acc + 1] = f[4]
    end
  end
  return acc
end
-- The payload bytes of the messages from <= seq <= upto in a blob whose
-- first message has seq first (walks the length prefixes only).
local function bytes_in(first, blob, from, upto)
  local n, pos, seq, len = 0, 1, first, string.len(blob)
  while pos <= len do
    local l = struct.unpack('>I4', blob, pos)
    if seq >= from and seq <= upto then n = n + l end
    pos = pos + 4 + l
    seq = seq + 1
  end
  return n
end
-- Drops the entries whose every message is acked (seq <= upto).
local function trim(out, upto)
  local cur = redis.call('XREVRANGE', out, top(upto + 1), '-', 'COUNT', 1)
  if #cur > 0 then
    local min = cur[1][1]
    if seq_of(min) + string.len(cur[1][2][2]) - 1 <= upto then
      min = string.format('%d-0', upto + 1)
    end
    redis.call('XTRIM', out, 'MINID', min)
  end
end
-- Deletes the entries at seq or after (below the ID below, if given):
-- left by a MULTI whose script failed after its XADD went in (NOSCRIPT),
-- so never counted in next_seq. The range is empty otherwise: nothing
-- is read.
local function orphans(out, seq, below)
  local hi = '+'
  if below then hi = '(' .. below end
  for _, e in ipairs(redis.call('XRANGE', out, string.format('%d-0', seq), hi)) do
    redis.call('XDEL', out, e[1])
  end
end
local function ttl(meta, out, ms)
  redis.call('PEXPIRE', meta, ms)
  redis.call('PEXPIRE', out, ms)
end
"#;

/// `create`: ARGV token_hash, identity, client_id, client_max, window_ms,
/// ttl_ms. Answers the deadline (ms).
const CREATE: &str = r#"
local deadline = now_ms() + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'identity', ARGV[2], 'client_id', ARGV[3],
  'client_max', ARGV[4], 'epoch', 0, 'owner', '', 'attached', 0, 'had_socket', 0,
  'next_seq', 1, 'acked', 0, 'trimmed', 0, 'in_delivered', 0, 'appended_bytes', 0,
  'acked_bytes', 0, 'deadline', deadline)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return deadline
"#;

/// `take`: ARGV node, token_hash, identity, last_received, first_seq,
/// hold_ms (window + lease), ttl_ms, channel prefix, sid. Answers
/// {"gone"} | {"refused"} | {"protocol", reason} | {"ok", epoch,
/// previous owner, had_socket, in_delivered, next_seq, acked, client_id,
/// client_max, acked before this HELLO, first seq, kinds, blob, ... (the
/// entries holding the unacked messages)}. Publishes "taken <sid>" to the
/// previous owner (another node) so it stops at once.
const TAKE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local m = redis.call('HMGET', KEYS[1], 'token', 'identity', 'epoch', 'owner', 'had_socket',
  'next_seq', 'acked', 'in_delivered', 'client_id', 'client_max', 'appended_bytes')
local token_ok = (m[1] == ARGV[2])
local identity_ok = (m[2] == ARGV[3])
if not (token_ok and identity_ok) then return {'refused'} end
local had = tonumber(m[5])
local next_seq = tonumber(m[6])
local last_received = tonumber(ARGV[4])
local first_seq = tonumber(ARGV[5])
if had == 0 and first_seq == 0 then return {'protocol', 'first_seq must be at least 1'} end
if last_received > next_seq - 1 then return {'protocol', 'claim ahead of what was sent'} end
local in_delivered = tonumber(m[8])
if had == 0 then in_delivered = first_seq - 1 end
local acked = math.max(tonumber(m[7]), last_received)
local epoch = tonumber(m[3]) + 1
local r = {'ok', epoch, m[4], had, in_delivered, next_seq, acked, m[9], m[10], tonumber(m[7])}
orphans(KEYS[2], next_seq)
entries(KEYS[2], acked + 1, next_seq - 1, r)
local unacked = 0
for i = 11, #r, 3 do
  unacked = unacked + bytes_in(r[i], r[i + 2], acked + 1, next_seq - 1)
end
trim(KEYS[2], acked)
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- An empty batch, so the stream exists (and expires with the meta).
  redis.call('XADD', KEYS[2], '0-1', 'k', '', 'b', '')
end
redis.call('HSET', KEYS[1], 'epoch', epoch, 'owner', ARGV[1], 'attached', 1, 'had_socket', 1,
  'in_delivered', in_delivered, 'acked', acked, 'trimmed', acked,
  'acked_bytes', tonumber(m[11]) - unacked, 'deadline', now_ms() + tonumber(ARGV[6]))
ttl(KEYS[1], KEYS[2], ARGV[7])
local prev = m[4]
if prev ~= '' and prev ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[8] .. prev, 'taken ' .. ARGV[9])
end
return r
"#;

/// `commit`: the owner's batch, run in one `MULTI` after the batch's
/// `XADD <known_next>-<epoch << 32 | attempt> k <kinds> b <blob>` (none
/// when the batch is empty), which this script never reads. ARGV epoch,
/// known_next, in_delivered, acked, freed bytes (acked since the last
/// commit), refresh (0/1: the lease), hold_ms, ttl_ms, detach (0/1),
/// window_ms, n (the batch's messages), bytes (their payload bytes), cut
/// (the first seq of the entry holding acked + 1 as far as the owner
/// knows, or 0: the trim then reads the entry), id (the batch's entry ID,
/// or '' with no batch).
///
/// Did the `XADD` go in, and may it stand? Only if the epoch is the
/// session's and next_seq is still known_next: every ID a writer could
/// have made at or past known_next (an `append`'s `<seq>-TOP`, a batch
/// recorded since at a higher seq, this owner's attempt whose answer was
/// lost) sorts above this one and made the `XADD` fail, and every lower
/// one (a stale owner's, this owner's earlier attempt that NOSCRIPT cut
/// short) is either gone or an orphan deleted here. Otherwise the entry
/// (if it went in) is deleted, and the batch is recorded in part or not
/// at all:
/// - the last batch this epoch recorded was at known_next (a retry of
///   an attempt whose answer was lost): its n messages stand, the node
///   re-sends the rest;
/// - else (other nodes appended since): nothing of it, the node
///   sends it again after the entries returned.
///
/// Answers {"gone"} | {"stale"} | {"ok", first seq of the batch,
/// deadline, messages of the batch recorded, next_seq, first seq, kinds,
/// blob, ... (the entries from known_next on the node has not seen:
/// appended by other nodes)}. A plain commit is seven commands (MULTI,
/// the `XADD`, EVALSHA running HMGET, the empty `XRANGE` of `orphans` and
/// HSET, EXEC) in one round trip, whatever the batch's size; acked entries
/// are trimmed every 256 messages and on the lease.
const COMMIT: &str = r#"
local n = tonumber(ARGV[11])
local id = ARGV[14]
local m = redis.call('HMGET', KEYS[1], 'epoch', 'next_seq', 'in_delivered', 'acked', 'trimmed',
  'appended_bytes', 'acked_bytes', 'batch_epoch', 'batch_at', 'batch_n')
if not m[1] then
  -- Ended or expired: the XADD may have made the stream again.
  if n > 0 then redis.call('DEL', KEYS[2]) end
  return {'gone'}
end
if tonumber(m[1]) ~= tonumber(ARGV[1]) then
  if n > 0 then redis.call('XDEL', KEYS[2], id) end
  return {'stale'}
end
local known = tonumber(ARGV[2])
local next_seq = tonumber(m[2])
local first, recorded, mine = next_seq, 0, false
if n > 0 then
  if next_seq == known then
    orphans(KEYS[2], known, id)
    recorded, mine = n, true
  else
    redis.call('XDEL', KEYS[2], id)
    if m[8] == ARGV[1] and tonumber(m[9]) == known then
      first, recorded = known, tonumber(m[10])
    end
  end
end
local appended = tonumber(m[6])
if mine then
  next_seq = next_seq + n
  appended = appended + tonumber(ARGV[12])
end
local r = {'ok', first, 0, recorded, next_seq}
entries(KEYS[2], known, first - 1, r)
entries(KEYS[2], math.max(known, first + recorded), next_seq - 1, r)
local in_delivered = math.max(tonumber(m[3]), tonumber(ARGV[3]))
local acked = math.max(tonumber(m[4]), math.min(tonumber(ARGV[4]), next_seq - 1))
local trimmed = tonumber(m[5])
local refresh = ARGV[6] == '1'
local detach = ARGV[9] == '1'
if acked > trimmed and (acked >= trimmed + 256 or refresh or detach) then
  local cut = tonumber(ARGV[13])
  if cut > 0 and cut <= acked + 1 then
    -- Where the owner's entries start is known to it: no read of an
    -- entry (a batch's blob made a Lua string, hashed byte by byte).
    redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', cut))
  else
    trim(KEYS[2], acked)
  end
  trimmed = acked
end
local h = {'HSET', KEYS[1], 'next_seq', next_seq, 'in_delivered', in_delivered, 'acked', acked,
  'trimmed', trimmed, 'appended_bytes', appended,
  'acked_bytes', tonumber(m[7]) + tonumber(ARGV[5])}
if mine then
  for _, v in ipairs({'batch_epoch', ARGV[1], 'batch_at', known, 'batch_n', n}) do
    h[#h + 1] = v
  end
end
if detach then
  r[3] = now_ms() + tonumber(ARGV[10])
  for _, v in ipairs({'attached', 0, 'owner', '', 'deadline', r[3]}) do
    h[#h + 1] = v
  end
elseif refresh then
  h[#h + 1] = 'deadline'
  h[#h + 1] = now_ms() + tonumber(ARGV[7])
end
redis.call(unpack(h))
if refresh or detach then ttl(KEYS[1], KEYS[2], ARGV[8]) end
return r
"#;

/// `append`: any node, no epoch (appending is not owning). ARGV max
/// unacked bytes, kind, blob (the payload, length-prefixed as in a
/// commit), channel prefix, sid. Answers {"gone"} |
/// {"too_large", client_max} | {"full"} | {"ok", seq}; publishes
/// "grew <sid>" to the owner's node when attached.
const APPEND: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'next_seq', 'client_max', 'appended_bytes',
  'acked_bytes', 'owner', 'attached')
if not m[1] then return {'gone'} end
local len = string.len(ARGV[3]) - 4
if len > tonumber(m[2]) then return {'too_large', m[2]} end
local unacked = tonumber(m[3]) - tonumber(m[4])
if unacked > 0 and unacked + len > tonumber(ARGV[1]) then return {'full'} end
local seq = tonumber(m[1])
orphans(KEYS[2], seq)
redis.call('XADD', KEYS[2], top(seq), 'k', ARGV[2], 'b', ARGV[3])
redis.call('HSET', KEYS[1], 'next_seq', seq + 1, 'appended_bytes', tonumber(m[3]) + len)
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
if m[6] == '1' and m[5] ~= '' then
  redis.call('PUBLISH', ARGV[4] .. m[5], 'grew ' .. ARGV[5])
end
return {'ok', seq}
"#;

/// `end`: close_session. Answers {"gone"} | {"ok", undelivered, owner,
/// attached}; the keys are gone.
const END: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'next_seq', 'acked', 'owner', 'attached')
if not m[1] then return {'gone'} end
redis.call('DEL', KEYS[1], KEYS[2])
return {'ok', tonumber(m[1]) - 1 - tonumber(m[2]), m[3], tonumber(m[4])}
"#;

/// `expire`: the sweeper's. Answers {"gone"} | {"alive", deadline} |
/// {"expired", undelivered}; an expired session's keys are gone, and
/// only the call that deleted them answers its count.
const EXPIRE: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'deadline', 'next_seq', 'acked')
if not m[1] then return {'gone'} end
local deadline = tonumber(m[1])
if deadline > now_ms() then return {'alive', deadline} end
redis.call('DEL', KEYS[1], KEYS[2])
return {'expired', tonumber(m[2]) - 1 - tonumber(m[3])}
"#;

/// The scripts, loaded once per store (EVALSHA, falling back to EVAL
/// after a Redis restart forgot them).
pub(crate) struct Scripts {
    pub(crate) create: redis::Script,
    pub(crate) take: redis::Script,
    pub(crate) commit: redis::Script,
    pub(crate) append: redis::Script,
    pub(crate) end: redis::Script,
    pub(crate) expire: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with = |body: &str| {
            redis::Script::new(&format!("local TOP = '{APPENDED}'\n{PRELUDE}\n{body}"))
        };
        Scripts {
            create: with(CREATE),
            take: with(TAKE),
            commit: with(COMMIT),
            append: with(APPEND),
            end: with(END),
            expire: with(EXPIRE),
        }
    }
}
