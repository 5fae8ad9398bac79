// Room creation across nodes (rules 59, 74): the store decides it in its transaction, so two nodes
// creating rooms at once never pass --max-total-rooms and agree on one owner. One real
// PostgreSQL, one redis-server and two nodes (lib/cluster.mjs), started here and stopped at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_TIMEOUT, assertError, eventually, guest, uniqRoom, user } from '../chat/lib/chat.mjs';
import { startCluster } from './lib/cluster.mjs';

const MAX_ROOMS = 6; // general and five more
const PER_NODE = 6;

test('two nodes creating the last rooms at once never pass --max-total-rooms', async (t) => {
  const { pg, nodes } = await startCluster(t, 2, { args: ['--max-total-rooms', String(MAX_ROOMS)] });
  const users = await Promise.all(nodes.flatMap((node) => Array.from({ length: PER_NODE }, () => user(node, t))));
  // Every join in flight at once, half on each node, each creating a room of its own.
  const replies = await Promise.all(users.map((u) => u.request({ type: 'join', room: uniqRoom() })));
  const made = replies.filter((r) => r.type === 'joined');
  for (const r of replies) if (r.type !== 'joined') assertError(r, 'too_many_rooms', r.id, 'a creating join past the limit');
  const stored = Number(pg.query("SELECT COUNT(*) FROM rooms WHERE name NOT LIKE 'dm:%' AND name <> 'general'"));
  assert.equal(stored, made.length, 'every room answered joined is stored, and only those');
  assert.equal(made.length, MAX_ROOMS - 1, 'general and the rest up to the limit');
  // Another creating join, on either node, is refused; a made room still joins.
  for (const u of [users[0], users[PER_NODE]]) await u.expectError({ type: 'join', room: uniqRoom() }, 'too_many_rooms');
  const madeRoom = made[0].room;
  assert.equal((await users[PER_NODE + 1].join(madeRoom)).room, madeRoom);
});

test('two nodes creating one room at once agree on its owner, the one the store keeps', async (t) => {
  const { pg, nodes } = await startCluster(t, 2);
  for (let round = 0; round < 5; round++) {
    const [a, b] = await Promise.all([user(nodes[0], t), user(nodes[1], t)]);
    const room = uniqRoom();
    const [ja, jb] = await Promise.all([a.join(room), b.join(room)]);
    const stored = pg.query(`SELECT owner FROM rooms WHERE name = '${room}'`);
    assert.ok([a.name.toLowerCase(), b.name.toLowerCase()].includes(stored), `stored owner ${stored}`);
    assert.equal(ja.owner.toLowerCase(), stored, `node0's joined: ${JSON.stringify(ja)}`);
    assert.equal(jb.owner.toLowerCase(), stored, `node1's joined: ${JSON.stringify(jb)}`);
    assert.deepEqual([ja.role, jb.role].sort(), ['member', 'owner']);
    // A later join on either node is told the same owner.
    const [c, d] = await Promise.all([user(nodes[0], t), user(nodes[1], t)]);
    assert.equal((await c.join(room)).owner, ja.owner);
    assert.equal((await d.join(room)).owner, ja.owner);
  }

  // A room made on node0: node1 hears of it with its owner, so a guest's join there shows the
  // owner without a registered join on node1 asking the store first.
  const maker = await user(nodes[0], t);
  const room = uniqRoom();
  await maker.join(room);
  const g = await guest(nodes[1], t);
  await eventually(async () => (await g.allRooms()).some((r) => r.name === room), EVENT_TIMEOUT, `node1 to list ${room}`);
  const joined = await g.expect({ type: 'join', room }, 'joined');
  assert.equal(joined.owner, maker.name, JSON.stringify(joined));
});
