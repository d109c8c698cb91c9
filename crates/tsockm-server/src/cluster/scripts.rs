//! The Lua scripts that change the cluster's state in Redis.
//!
//! Every change that others must see is one script, so that Redis runs it
//! whole: it takes the next message sequence number (from one counter, at
//! least the clock times 1,024, so numbers never go back even after Redis
//! restarts empty) and appends the event, under that number as its stream
//! id, to the inbox stream of every node that must see it. Scripts run one
//! at a time, so every inbox receives events in the order of their numbers:
//! that single order is what makes a conversation arrive in id order on
//! every node.
//!
//! Every script takes `ARGV[1]` = the key prefix (`<cluster-name>:`) and
//! `ARGV[2]` = the most events an inbox keeps; its own arguments follow.

use std::sync::LazyLock;

use redis::Script;

/// What every script starts with: the helpers.
const PRELUDE: &str = r#"
local P = ARGV[1]
local INBOX_MAX = ARGV[2]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function next_seq()
  local seq = redis.call('INCR', P .. 'seq')
  local floor = now_ms() * 1024
  if seq < floor then
    seq = floor
    redis.call('SET', P .. 'seq', string.format('%.0f', seq))
  end
  return seq
end
local function sid(seq)
  return string.format('%.0f', seq) .. '-0'
end
local function post(node, seq, fields)
  redis.call('XADD', P .. 'inbox:' .. node, 'MAXLEN', '~', INBOX_MAX, sid(seq), unpack(fields))
end
local function post_all(seq, fields)
  for _, node in ipairs(redis.call('HKEYS', P .. 'nodes')) do
    post(node, seq, fields)
  end
end
local function split(s)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for item in string.gmatch(s, '[^\n]+') do table.insert(out, item) end
  return out
end
local function count(hash, field, by)
  local n = redis.call('HINCRBY', hash, field, by)
  if n <= 0 then redis.call('HDEL', hash, field) end
  return n
end
-- A node declared dead stays routed while it has peers (their events are
-- read from its inbox when they resume elsewhere), then is forgotten.
local function forget_if_done(node)
  if redis.call('HGET', P .. 'nodes', node) == 'dead'
     and tonumber(redis.call('HGET', P .. 'nodepeers', node) or '0') <= 0 then
    redis.call('HDEL', P .. 'nodes', node)
    redis.call('HDEL', P .. 'nodepeers', node)
  end
end
-- Removes a peer everywhere and tells every node.
local function remove_peer(id)
  local key = P .. 'peer:' .. id
  local r = redis.call('HMGET', key, 'node', 'name', 'rooms')
  for _, room in ipairs(split(r[3])) do
    redis.call('HDEL', P .. 'room:' .. room, id)
    count(P .. 'roomnodes:' .. room, r[1], -1)
    count(P .. 'rooms', room, -1)
  end
  redis.call('SREM', P .. 'peers', id)
  redis.call('DEL', key)
  count(P .. 'nodepeers', r[1], -1)
  forget_if_done(r[1])
  local seq = next_seq()
  post_all(seq, {'k', 'kill', 'i', id, 'n', r[2]})
  return seq
end
"#;

/// Makes a script of the prelude and `body`.
fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// A node joins: `ARGV[3]` node, `[4]` heartbeat ms, `[5]` alphabet to use
/// if the cluster has none, `[6]` epoch to use if none. Returns the
/// alphabet, the epoch, the current sequence number, then for every peer
/// its id, node, state, name, since (ms) and address.
pub static NODE_UP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local node = ARGV[3]
redis.call('HSET', P .. 'nodes', node, 'alive')
redis.call('SET', P .. 'alive:' .. node, '1', 'PX', ARGV[4])
redis.call('HSETNX', P .. 'meta', 'alphabet', ARGV[5])
redis.call('HSETNX', P .. 'meta', 'epoch', ARGV[6])
local out = {redis.call('HGET', P .. 'meta', 'alphabet'), redis.call('HGET', P .. 'meta', 'epoch'),
             redis.call('GET', P .. 'seq') or '0'}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'peers')) do
  local r = redis.call('HMGET', P .. 'peer:' .. id, 'node', 'state', 'name', 'since', 'addr')
  table.insert(out, id)
  for i = 1, 5 do table.insert(out, r[i] or '') end
end
return out
"#,
    )
});

/// The heartbeat: `ARGV[3]` node, `[4]` ms, `[5]` the epoch the node knows.
/// Returns `ok`, `reset` (Redis lost its data, or a new epoch) or `gone`
/// (this node was declared dead meanwhile).
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local node = ARGV[3]
if redis.call('HGET', P .. 'meta', 'epoch') ~= ARGV[5] then return 'reset' end
redis.call('SET', P .. 'alive:' .. node, '1', 'PX', ARGV[4])
if redis.call('HGET', P .. 'nodes', node) ~= 'alive' then return 'gone' end
return 'ok'
"#,
    )
});

/// A peer registered: `ARGV[3]` id, `[4]` node, `[5]` name, `[6]` since,
/// `[7]` address, `[8]` token hash. Returns its sequence number.
pub static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id, node = ARGV[3], ARGV[4]
redis.call('SADD', P .. 'peers', id)
redis.call('HSET', P .. 'peer:' .. id, 'node', node, 'state', 'on', 'name', ARGV[5],
  'since', ARGV[6], 'addr', ARGV[7], 'hash', ARGV[8], 'away', '0', 'rooms', '')
redis.call('HINCRBY', P .. 'nodepeers', node, 1)
local seq = next_seq()
post_all(seq, {'k', 'join', 'i', id, 'n', ARGV[5], 'o', node, 's', ARGV[6], 'a', ARGV[7]})
return seq
"#,
    )
});

/// Removes a peer: `ARGV[3]` id, `[4]` `any`, or a node name: then only if
/// the peer is away on that node. Returns the kill's sequence number, or 0.
pub static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[3]
local r = redis.call('HMGET', P .. 'peer:' .. id, 'node', 'state')
if not r[1] then return 0 end
if ARGV[4] ~= 'any' and (r[2] ~= 'away' or r[1] ~= ARGV[4]) then return 0 end
return remove_peer(id)
"#,
    )
});

/// A message: `ARGV[3]` kind (`lobby`, `room`, `direct`), `[4]` author,
/// `[5]` author's name, `[6]` text, `[7]` ms, `[8]` room or recipient,
/// `[9]` history max, `[10]` history key. Returns its sequence number, or
/// -403 (not a member) or -404 (no such recipient).
pub static MSG: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local kind, author, target = ARGV[3], ARGV[4], ARGV[8]
local nodes
if kind == 'direct' then
  local node = redis.call('HGET', P .. 'peer:' .. target, 'node')
  if not node then return -404 end
  nodes = {node}
elseif kind == 'room' then
  if redis.call('HEXISTS', P .. 'room:' .. target, author) == 0 then return -403 end
  nodes = redis.call('HKEYS', P .. 'roomnodes:' .. target)
else
  nodes = redis.call('HKEYS', P .. 'nodes')
end
local seq = next_seq()
local hist = tonumber(ARGV[9])
if hist > 0 then
  redis.call('XADD', P .. 'hist:' .. ARGV[10], 'MAXLEN', hist, sid(seq),
    'a', author, 'n', ARGV[5], 'x', ARGV[6], 't', ARGV[7])
end
local f = {'k', 'msg', 'c', kind, 'a', author, 'n', ARGV[5], 'x', ARGV[6], 't', ARGV[7], 'd', target}
for _, node in ipairs(nodes) do post(node, seq, f) end
return seq
"#,
    )
});

/// A room joined: `ARGV[3]` room, `[4]` id, `[5]` name, `[6]` node. The
/// event carries the members already there (`id\tname` lines). A member
/// joining again gets the event alone (flag `g`). Returns its number.
pub static ROOM_JOIN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local room, id, node = ARGV[3], ARGV[4], ARGV[6]
local rk = P .. 'room:' .. room
local again = redis.call('HEXISTS', rk, id) == 1
local roster = {}
for _, m in ipairs(redis.call('HKEYS', rk)) do
  if m ~= id then
    table.insert(roster, m .. '\t' .. (redis.call('HGET', P .. 'peer:' .. m, 'name') or ''))
  end
end
local seq = next_seq()
local f = {'k', 'rjoin', 'm', room, 'i', id, 'n', ARGV[5], 'R', table.concat(roster, '\n'),
           'g', again and '1' or '0'}
if again then
  post(node, seq, f)
  return seq
end
redis.call('HSET', rk, id, '1')
redis.call('HINCRBY', P .. 'roomnodes:' .. room, node, 1)
redis.call('HINCRBY', P .. 'rooms', room, 1)
local pk = P .. 'peer:' .. id
local rooms = redis.call('HGET', pk, 'rooms') or ''
if rooms == '' then rooms = room else rooms = rooms .. '\n' .. room end
redis.call('HSET', pk, 'rooms', rooms)
for _, n in ipairs(redis.call('HKEYS', P .. 'roomnodes:' .. room)) do post(n, seq, f) end
return seq
"#,
    )
});

/// A room left: `ARGV[3]` room, `[4]` id, `[5]` name, `[6]` node. Every
/// member's node is told (the leaver's included). Returns its number, or
/// -404 if the peer is not in the room.
pub static ROOM_PART: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local room, id, node = ARGV[3], ARGV[4], ARGV[6]
local rk = P .. 'room:' .. room
if redis.call('HEXISTS', rk, id) == 0 then return -404 end
local seq = next_seq()
local f = {'k', 'rpart', 'm', room, 'i', id, 'n', ARGV[5]}
for _, n in ipairs(redis.call('HKEYS', P .. 'roomnodes:' .. room)) do post(n, seq, f) end
redis.call('HDEL', rk, id)
count(P .. 'roomnodes:' .. room, node, -1)
count(P .. 'rooms', room, -1)
local pk = P .. 'peer:' .. id
local kept = {}
for _, r in ipairs(split(redis.call('HGET', pk, 'rooms'))) do
  if r ~= room then table.insert(kept, r) end
end
redis.call('HSET', pk, 'rooms', table.concat(kept, '\n'))
return seq
"#,
    )
});

/// A resume on `ARGV[6]` of peer `[3]` with token hash `[4]`: the session
/// moves here with the new hash `[5]` and address `[7]`. Returns {-404}, or
/// {seq, old node, old state, away seq, rooms, name, since, address}.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id, node = ARGV[3], ARGV[6]
local key = P .. 'peer:' .. id
local r = redis.call('HMGET', key, 'node', 'state', 'hash', 'away', 'rooms', 'name', 'since')
if not r[1] or r[3] ~= ARGV[4] then return {-404} end
local old = r[1]
if old ~= node then
  for _, room in ipairs(split(r[5])) do
    count(P .. 'roomnodes:' .. room, old, -1)
    redis.call('HINCRBY', P .. 'roomnodes:' .. room, node, 1)
  end
  count(P .. 'nodepeers', old, -1)
  redis.call('HINCRBY', P .. 'nodepeers', node, 1)
end
local away = r[4] or '0'
redis.call('HSET', key, 'node', node, 'state', 'on', 'hash', ARGV[5], 'addr', ARGV[7])
local seq = next_seq()
if r[2] == 'on' then away = string.format('%.0f', seq) end
post_all(seq, {'k', 'move', 'i', id, 'o', node, 'f', old})
forget_if_done(old)
return {seq, old, r[2], away, r[5] or '', r[6], r[7]}
"#,
    )
});

/// A peer's connection ended on its node `ARGV[4]`: peer `[3]` is away,
/// having been written everything up to number `[5]` (a node that moves
/// its session replays what came after). Returns the number, or 0 if it is
/// not on that node.
pub static AWAY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id, node = ARGV[3], ARGV[4]
local key = P .. 'peer:' .. id
if redis.call('HGET', key, 'node') ~= node then return 0 end
local seq = next_seq()
local through = math.min(tonumber(ARGV[5]) or seq, seq)
redis.call('HSET', key, 'state', 'away', 'away', string.format('%.0f', through))
post_all(seq, {'k', 'away', 'i', id})
return seq
"#,
    )
});

/// A peer resumed on its own node `ARGV[4]`: peer `[3]` is online with the
/// token hash `[5]`. Returns the number, or 0.
pub static ONLINE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id, node = ARGV[3], ARGV[4]
local key = P .. 'peer:' .. id
if redis.call('HGET', key, 'node') ~= node then return 0 end
redis.call('HSET', key, 'state', 'on', 'hash', ARGV[5])
local seq = next_seq()
post_all(seq, {'k', 'online', 'i', id})
return seq
"#,
    )
});

/// Node `ARGV[3]` missed its heartbeat: declare it dead (once) and make its
/// online peers away. Returns the number, or 0 if someone did already (or
/// it is alive after all).
pub static NODE_DEAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local dead = ARGV[3]
if redis.call('HGET', P .. 'nodes', dead) ~= 'alive' then return 0 end
if redis.call('EXISTS', P .. 'alive:' .. dead) == 1 then return 0 end
redis.call('HSET', P .. 'nodes', dead, 'dead')
local seq = next_seq()
for _, id in ipairs(redis.call('SMEMBERS', P .. 'peers')) do
  local key = P .. 'peer:' .. id
  local r = redis.call('HMGET', key, 'node', 'state')
  if r[1] == dead and r[2] == 'on' then
    redis.call('HSET', key, 'state', 'away', 'away', string.format('%.0f', seq))
  end
end
post_all(seq, {'k', 'dead', 'o', dead})
redis.call('EXPIRE', P .. 'inbox:' .. dead, 3600)
forget_if_done(dead)
return seq
"#,
    )
});

/// Node `ARGV[3]` stops: every peer of it is removed (a kill each), then
/// the node. Returns how many peers.
pub static NODE_DOWN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local node = ARGV[3]
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'peers')) do
  if redis.call('HGET', P .. 'peer:' .. id, 'node') == node then
    remove_peer(id)
    n = n + 1
  end
end
redis.call('HDEL', P .. 'nodes', node)
redis.call('HDEL', P .. 'nodepeers', node)
redis.call('DEL', P .. 'alive:' .. node, P .. 'inbox:' .. node)
return n
"#,
    )
});

/// The operator of another node asks for peer `ARGV[3]` to be removed:
/// the request goes to its node. Returns the node, or false.
pub static KILL_REQUEST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local node = redis.call('HGET', P .. 'peer:' .. ARGV[3], 'node')
if not node then return false end
local seq = next_seq()
post(node, seq, {'k', 'ctl-kill', 'i', ARGV[3]})
return node
"#,
    )
});

/// Puts back what this node knows after Redis lost its data (or declared
/// the node dead): `ARGV[3]` node, `[4]` heartbeat ms, `[5]` alphabet, `[6]`
/// epoch, `[7]` the last sequence number the node saw, then for every local
/// peer 8 values: id, state, name, since, addr, hash, rooms, away. Tells
/// every node each peer is online (or away). Returns the new number.
pub static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local node = ARGV[3]
redis.call('HSETNX', P .. 'meta', 'alphabet', ARGV[5])
redis.call('HSETNX', P .. 'meta', 'epoch', ARGV[6])
local last = tonumber(ARGV[7])
if tonumber(redis.call('GET', P .. 'seq') or '0') < last then
  redis.call('SET', P .. 'seq', string.format('%.0f', last))
end
redis.call('HSET', P .. 'nodes', node, 'alive')
redis.call('SET', P .. 'alive:' .. node, '1', 'PX', ARGV[4])
local seq = 0
local i = 8
local n = 0
while ARGV[i] do
  local id, state, name, rooms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 6]
  local key = P .. 'peer:' .. id
  local before = redis.call('HGET', key, 'node')
  if before ~= node then
    if before then count(P .. 'nodepeers', before, -1) end
    redis.call('HINCRBY', P .. 'nodepeers', node, 1)
  end
  redis.call('SADD', P .. 'peers', id)
  redis.call('HSET', key, 'node', node, 'state', state, 'name', name, 'since', ARGV[i + 3],
    'addr', ARGV[i + 4], 'hash', ARGV[i + 5], 'rooms', rooms, 'away', ARGV[i + 7])
  for _, room in ipairs(split(rooms)) do
    if redis.call('HSETNX', P .. 'room:' .. room, id, '1') == 1 then
      redis.call('HINCRBY', P .. 'roomnodes:' .. room, node, 1)
      redis.call('HINCRBY', P .. 'rooms', room, 1)
    end
  end
  seq = next_seq()
  post_all(seq, {'k', 'restore', 'i', id, 'n', name, 'o', node, 's', ARGV[i + 3], 'a', ARGV[i + 4],
                 'e', state})
  i = i + 8
  n = n + 1
end
return seq
"#,
    )
});
