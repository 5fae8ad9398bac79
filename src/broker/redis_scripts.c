/* redis_scripts: the Lua scripts the Redis broker runs (broker_redis.c); keys in its header. */
#include "redis_scripts.h"

/* Undoes what node d held: its users leave (offline published when it was their last node), its
 * guests' names are freed, its counts dropped, its room members leave (published on each room's
 * channel, rchan .. room), its keys and lease deleted, and "<how> <d> *" on the users channel
 * tells every node it is gone: what it committed and never published is read from the store. */
#define LUA_UNDO_NODE                                                                              \
    "local function undo_node(p, d, chan, rchan, how)\n"                                           \
    "  local nk = p .. 'node:' .. d\n"                                                             \
    "  for _, u in ipairs(redis.call('SMEMBERS', nk .. ':users')) do\n"                            \
    "    local k = p .. 'user:' .. u\n"                                                            \
    "    redis.call('SREM', k, d)\n"                                                               \
    "    if redis.call('SCARD', k) == 0 then\n"                                                    \
    "      redis.call('PUBLISH', chan, 'o ' .. d .. ' ' .. u .. '\\n')\n"                          \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  for _, g in ipairs(redis.call('SMEMBERS', nk .. ':guests')) do\n"                           \
    "    local gk = p .. 'guest:' .. g\n"                                                          \
    "    redis.call('SREM', gk .. ':nodes', d)\n"                                                  \
    "    if redis.call('EXISTS', gk .. ':nodes') == 0 then\n"                                      \
    "      redis.call('DEL', gk, gk .. ':shown')\n"                                                \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  for _, r in ipairs(redis.call('SMEMBERS', nk .. ':rooms')) do\n"                            \
    "    redis.call('HDEL', p .. 'count:' .. r, d)\n"                                              \
    "  end\n"                                                                                      \
    "  for _, r in ipairs(redis.call('SMEMBERS', nk .. ':mrooms')) do\n"                           \
    "    local k = p .. 'rm:' .. r .. ':' .. d\n"                                                  \
    "    for _, u in ipairs(redis.call('SMEMBERS', k)) do\n"                                       \
    "      redis.call('PUBLISH', rchan .. r, 'm ' .. d .. ' - ' .. u .. '\\n')\n"                  \
    "    end\n"                                                                                    \
    "    redis.call('DEL', k)\n"                                                                   \
    "  end\n"                                                                                      \
    "  redis.call('DEL', nk, nk .. ':users', nk .. ':guests', nk .. ':rooms', nk .. ':mrooms')\n"  \
    "  redis.call('ZREM', p .. 'nodes', d)\n"                                                      \
    "  redis.call('PUBLISH', chan, how .. ' ' .. d .. ' *\\n')\n"                                  \
    "end\n"

/* Renews this node's lease and reaps every node whose lease ran out (undo_node, "x": it died).
 * ARGV: prefix, id, lease ms, node name, users channel, rooms' channel prefix. Returns
 * {fresh, reaped}: fresh is 1 when this node had no lease (first start, reaped, or Redis
 * restarted). */
const char redis_lua_lease[] = LUA_UNDO_NODE
    "local p, id, chan = ARGV[1], ARGV[2], ARGV[5]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local fresh = redis.call('ZADD', p .. 'nodes', now + tonumber(ARGV[3]), id)\n"
    "redis.call('HSET', p .. 'node:' .. id, 'name', ARGV[4])\n"
    "local reaped = 0\n"
    "for _, d in ipairs(redis.call('ZRANGEBYSCORE', p .. 'nodes', '-inf', '(' .. now)) do\n"
    "  undo_node(p, d, chan, ARGV[6], 'x')\n"
    "  reaped = reaped + 1\n"
    "end\n"
    "return {fresh, reaped}\n";

/* This node stops cleanly: it undoes itself at once (undo_node, "g": it said goodbye), as a
 * reaper would after its lease. ARGV: prefix, id, users channel, rooms' channel prefix. */
#define LUA_GOODBYE "undo_node(ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'g')\nreturn 0\n"
const char redis_lua_goodbye[] = LUA_UNDO_NODE LUA_GOODBYE;

/* Makes Redis hold exactly this node's users and guests. ARGV: prefix, id, users channel, the
 * number of users, the users, the number of guests, the guests as name, session, name as shown
 * triples. A guest's name another node holds for another session stays that node's (both learnt
 * it while apart). */
const char redis_lua_sync[] =
    "local p, id, chan = ARGV[1], ARGV[2], ARGV[3]\n"
    "local nu = tonumber(ARGV[4])\n"
    "local want = {}\n"
    "for i = 5, 4 + nu do want[ARGV[i]] = true end\n"
    "local nk = p .. 'node:' .. id .. ':users'\n"
    "for _, u in ipairs(redis.call('SMEMBERS', nk)) do\n"
    "  if not want[u] then\n"
    "    redis.call('SREM', nk, u)\n"
    "    local k = p .. 'user:' .. u\n"
    "    if redis.call('SREM', k, id) == 1 and redis.call('SCARD', k) == 0 then\n"
    "      redis.call('PUBLISH', chan, 'o ' .. id .. ' ' .. u .. '\\n')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for u, _ in pairs(want) do\n"
    "  redis.call('SADD', nk, u)\n"
    "  local k = p .. 'user:' .. u\n"
    "  if redis.call('SADD', k, id) == 1 and redis.call('SCARD', k) == 1 then\n"
    "    redis.call('PUBLISH', chan, 'p ' .. id .. ' ' .. u .. '\\n')\n"
    "  end\n"
    "end\n"
    "local base = 5 + nu\n"
    "local gk = p .. 'node:' .. id .. ':guests'\n"
    "local gwant = {}\n"
    "for i = base + 1, base + 3 * tonumber(ARGV[base]), 3 do\n"
    "  gwant[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]}\n"
    "end\n"
    "for _, g in ipairs(redis.call('SMEMBERS', gk)) do\n"
    "  if not gwant[g] then\n"
    "    redis.call('SREM', gk, g)\n"
    "    local k = p .. 'guest:' .. g\n"
    "    redis.call('SREM', k .. ':nodes', id)\n"
    "    if redis.call('EXISTS', k .. ':nodes') == 0 then redis.call('DEL', k, k .. ':shown') end\n"
    "  end\n"
    "end\n"
    "for g, w in pairs(gwant) do\n"
    "  local k, s = p .. 'guest:' .. g, w[1]\n"
    "  redis.call('SADD', gk, g)\n"
    "  if redis.call('SET', k, s, 'NX') or redis.call('GET', k) == s then\n"
    "    redis.call('SADD', k .. ':nodes', id)\n"
    "    if w[2] ~= '' then redis.call('SET', k .. ':shown', s .. ' ' .. w[2]) end\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* A user's first connection here (ARGV[4] '1') or its last one gone. ARGV: prefix, id, user,
 * online, users channel. Publishes presence when the user's first node came or last one left. */
const char redis_lua_here[] =
    "local p, id, u, chan = ARGV[1], ARGV[2], ARGV[3], ARGV[5]\n"
    "local nk, k = p .. 'node:' .. id .. ':users', p .. 'user:' .. u\n"
    "if ARGV[4] == '1' then\n"
    "  redis.call('SADD', nk, u)\n"
    "  if redis.call('SADD', k, id) == 1 and redis.call('SCARD', k) == 1 then\n"
    "    redis.call('PUBLISH', chan, 'p ' .. id .. ' ' .. u .. '\\n')\n"
    "  end\n"
    "else\n"
    "  redis.call('SREM', nk, u)\n"
    "  if redis.call('SREM', k, id) == 1 and redis.call('SCARD', k) == 0 then\n"
    "    redis.call('PUBLISH', chan, 'o ' .. id .. ' ' .. u .. '\\n')\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* Claims a guest's name for a session: 1 unless a node whose lease is alive holds it for another
 * session. guest:<name> holds the session, guest:<name>:nodes the nodes holding it,
 * guest:<name>:shown "<session> <name as shown>" (none for a registration's claim). ARGV: prefix,
 * id, name, session, name as shown ("" for none). */
const char redis_lua_claim[] =
    "local p, id, g, s = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local k = p .. 'guest:' .. g\n"
    "local owner = redis.call('GET', k)\n"
    "if owner and owner ~= s then\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  for _, n in ipairs(redis.call('SMEMBERS', k .. ':nodes')) do\n"
    "    local exp = redis.call('ZSCORE', p .. 'nodes', n)\n"
    "    if exp and tonumber(exp) >= now then return 0 end\n"
    "  end\n"
    "  redis.call('DEL', k .. ':nodes')\n"
    "end\n"
    "redis.call('SET', k, s)\n"
    "if ARGV[5] ~= '' then\n"
    "  redis.call('SET', k .. ':shown', s .. ' ' .. ARGV[5])\n"
    "else\n"
    "  redis.call('DEL', k .. ':shown')\n"
    "end\n"
    "redis.call('SADD', k .. ':nodes', id)\n"
    "redis.call('SADD', p .. 'node:' .. id .. ':guests', g)\n"
    "return 1\n";

/* Whether a node whose lease is alive holds a guest's name for a guest session (a registration's
 * claim, session 0, is no guest): the name as shown, or nil. A name claimed by a node that kept
 * no shown name (an older version) is answered lower-cased. ARGV: prefix, id, name. */
const char redis_lua_lookup[] =
    "local p, g = ARGV[1], ARGV[3]\n"
    "local k = p .. 'guest:' .. g\n"
    "local s = redis.call('GET', k)\n"
    "if not s or s == '0' then return false end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "for _, n in ipairs(redis.call('SMEMBERS', k .. ':nodes')) do\n"
    "  local exp = redis.call('ZSCORE', p .. 'nodes', n)\n"
    "  if exp and tonumber(exp) >= now then\n"
    "    local rs, shown = string.match(redis.call('GET', k .. ':shown') or '', '^(%d+) (.+)$')\n"
    "    if rs == s then return shown end\n"
    "    return g\n"
    "  end\n"
    "end\n"
    "return false\n";

/* Lets a guest's name go on this node: free once no node holds it. ARGV: prefix, id, name. */
const char redis_lua_release[] =
    "local p, id, g = ARGV[1], ARGV[2], ARGV[3]\n"
    "local k = p .. 'guest:' .. g\n"
    "redis.call('SREM', k .. ':nodes', id)\n"
    "if redis.call('EXISTS', k .. ':nodes') == 0 then redis.call('DEL', k, k .. ':shown') end\n"
    "redis.call('SREM', p .. 'node:' .. id .. ':guests', g)\n"
    "return 0\n";

/* Sets this node's members in a room and returns the other live nodes' total. ARGV: prefix, id,
 * room, members here. */
const char redis_lua_count[] =
    "local p, id, r, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])\n"
    "local k = p .. 'count:' .. r\n"
    "if n > 0 then\n"
    "  redis.call('HSET', k, id, n)\n"
    "  redis.call('SADD', p .. 'node:' .. id .. ':rooms', r)\n"
    "else\n"
    "  redis.call('HDEL', k, id)\n"
    "  redis.call('SREM', p .. 'node:' .. id .. ':rooms', r)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local all, sum = redis.call('HGETALL', k), 0\n"
    "for i = 1, #all, 2 do\n"
    "  if all[i] ~= id then\n"
    "    local exp = redis.call('ZSCORE', p .. 'nodes', all[i])\n"
    "    if exp and tonumber(exp) >= now then sum = sum + tonumber(all[i + 1]) end\n"
    "  end\n"
    "end\n"
    "return sum\n";

/* The users online on the other live nodes. ARGV: prefix, id. */
const char redis_lua_snapshot[] =
    "local p, id = ARGV[1], ARGV[2]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local seen, out = {}, {}\n"
    "for _, n in ipairs(redis.call('ZRANGEBYSCORE', p .. 'nodes', now, '+inf')) do\n"
    "  if n ~= id then\n"
    "    for _, u in ipairs(redis.call('SMEMBERS', p .. 'node:' .. n .. ':users')) do\n"
    "      if not seen[u] then seen[u] = true; out[#out + 1] = u end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* A user's first connection in a room on this node (ARGV[5] '1') or its last one there gone.
 * ARGV: prefix, id, room, user, in, the room's channel. Publishes "m <id> +|- <user>" on the
 * room's channel when the set changed. O(1). */
const char redis_lua_room_here[] =
    "local p, id, r, u, chan = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6]\n"
    "local k, mk = p .. 'rm:' .. r .. ':' .. id, p .. 'node:' .. id .. ':mrooms'\n"
    "if ARGV[5] == '1' then\n"
    "  if redis.call('SADD', k, u) == 1 then\n"
    "    redis.call('SADD', mk, r)\n"
    "    redis.call('PUBLISH', chan, 'm ' .. id .. ' + ' .. u .. '\\n')\n"
    "  end\n"
    "elseif redis.call('SREM', k, u) == 1 then\n"
    "  redis.call('PUBLISH', chan, 'm ' .. id .. ' - ' .. u .. '\\n')\n"
    "  if redis.call('EXISTS', k) == 0 then redis.call('SREM', mk, r) end\n"
    "end\n"
    "return 0\n";

/* Makes Redis hold exactly these users as this node's members of a room (after a reconnect),
 * publishing what changed. ARGV: prefix, id, room, the room's channel, the users. */
const char redis_lua_room_sync[] =
    "local p, id, r, chan = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local k, mk = p .. 'rm:' .. r .. ':' .. id, p .. 'node:' .. id .. ':mrooms'\n"
    "local want = {}\n"
    "for i = 5, #ARGV do want[ARGV[i]] = true end\n"
    "for _, u in ipairs(redis.call('SMEMBERS', k)) do\n"
    "  if not want[u] then\n"
    "    redis.call('SREM', k, u)\n"
    "    redis.call('PUBLISH', chan, 'm ' .. id .. ' - ' .. u .. '\\n')\n"
    "  end\n"
    "end\n"
    "for u, _ in pairs(want) do\n"
    "  if redis.call('SADD', k, u) == 1 then\n"
    "    redis.call('PUBLISH', chan, 'm ' .. id .. ' + ' .. u .. '\\n')\n"
    "  end\n"
    "end\n"
    "if redis.call('EXISTS', k) == 1 then redis.call('SADD', mk, r) else redis.call('SREM', mk, r) "
    "end\n"
    "return 0\n";

/* Clears this node's members of every room it no longer follows (left while cut off), publishing
 * each leave. ARGV: prefix, id, rooms' channel prefix, the followed rooms. */
const char redis_lua_rooms_prune[] =
    "local p, id, cp = ARGV[1], ARGV[2], ARGV[3]\n"
    "local keep = {}\n"
    "for i = 4, #ARGV do keep[ARGV[i]] = true end\n"
    "local mk = p .. 'node:' .. id .. ':mrooms'\n"
    "for _, r in ipairs(redis.call('SMEMBERS', mk)) do\n"
    "  if not keep[r] then\n"
    "    local k = p .. 'rm:' .. r .. ':' .. id\n"
    "    for _, u in ipairs(redis.call('SMEMBERS', k)) do\n"
    "      redis.call('PUBLISH', cp .. r, 'm ' .. id .. ' - ' .. u .. '\\n')\n"
    "    end\n"
    "    redis.call('DEL', k)\n"
    "    redis.call('SREM', mk, r)\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* A room's members on the other live nodes: {node, user, node, user, ...}. ARGV: prefix, id,
 * room. O(live nodes + members). */
const char redis_lua_room_snapshot[] =
    "local p, id, r = ARGV[1], ARGV[2], ARGV[3]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local out = {}\n"
    "for _, n in ipairs(redis.call('ZRANGEBYSCORE', p .. 'nodes', now, '+inf')) do\n"
    "  if n ~= id then\n"
    "    for _, u in ipairs(redis.call('SMEMBERS', p .. 'rm:' .. r .. ':' .. n)) do\n"
    "      out[#out + 1] = n; out[#out + 1] = u\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";
