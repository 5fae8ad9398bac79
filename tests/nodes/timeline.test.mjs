// Several nodes, one chat: three parley nodes on one PostgreSQL and one Redis (both real, started
// here), 300 clients spread over them (WebSocket, and telnet in general), 20 rooms, everyone
// sending with cids: every member gets every event of its rooms exactly once in seq order;
// direct messages cross nodes; a cid retried at another node is acked with the first seq; a ban
// stored on one node holds on the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, PASSWORD } from '../chat/lib/chat.mjs';
import { startCluster } from './lib/cluster.mjs';
import { LOAD_TIMEOUT, assertDelivered, assertDistinctSeqs, makeRooms, openClients, roomNames, sendAll } from './lib/load.mjs';

const NODE_ARGS = ['--rate-limit', '0', '--workers', '2'];

async function login(node, name, label = name) {
  const c = await ChatClient.connect(node, { label, timeoutMs: LOAD_TIMEOUT });
  await c.login(name, PASSWORD);
  return c;
}

test('three nodes, 300 clients, 20 rooms: every event once and in seq order everywhere, dms and cid retries across nodes', async (t) => {
  const rooms = roomNames(20);
  const { nodes, pg } = await startCluster(t, 3, {
    args: NODE_ARGS,
    before: async (node0) => {
      await makeRooms(node0, rooms);
      for (const name of ['alice', 'bob']) {
        const c = await ChatClient.connect(node0, { label: name });
        await c.register(name, PASSWORD);
        c.terminate();
      }
    },
  });
  const { ws, telnet } = await openClients(t, nodes, 300, rooms);
  assert.equal(ws.length + telnet.length, 300);

  const { acks, busy } = await sendAll(ws, 3);
  assert.equal(busy, 0, 'no send was refused: each node reads a room\'s seq afresh when another node wrote it');
  assertDistinctSeqs(acks);
  assert.equal([...acks.values()].reduce((n, l) => n + l.length, 0), ws.length * 3);
  await assertDelivered(ws, telnet, acks);

  // A cid retried at another node (the same account, another connection) is acked with the
  // first seq, and stored once.
  const onA = await login(nodes[0], 'alice');
  const onB = await login(nodes[1], 'alice', 'alice on node1');
  t.after(() => {
    onA.terminate();
    onB.terminate();
  });
  const joinedA = await onA.join('room1');
  await onB.join('room1');
  const first = await onA.say('room1', 'once only', { cid: 'across-1' });
  const retry = await onB.request({ type: 'send', room: 'room1', text: 'once only', cid: 'across-1' });
  assert.equal(retry.type, 'ack', JSON.stringify(retry));
  assert.equal(retry.seq, first.seq, 'the retry at another node is acked with the first seq');
  const h = await onB.expect({ type: 'history', room: 'room1' }, 'history');
  assert.equal(h.messages.filter((m) => m.text === 'once only').length, 1, 'stored once');
  assert.ok(first.seq > joinedA.seq);

  // Direct messages: alice on node0 and node1, bob on node2; each message reaches every
  // connection of both users, whichever node stored it.
  const bob = await login(nodes[2], 'bob');
  t.after(() => bob.terminate());
  const sent = await onA.dm('bob', 'hello bob from node0');
  const atBob = await bob.nextMessage('dm:alice:bob', (m) => m.text === 'hello bob from node0', LOAD_TIMEOUT);
  assert.equal(atBob.seq, sent.seq);
  const atOtherAlice = await onB.nextMessage('dm:alice:bob', (m) => m.text === 'hello bob from node0', LOAD_TIMEOUT);
  assert.equal(atOtherAlice.seq, sent.seq);
  const back = await bob.dm('alice', 'hello alice from node2');
  for (const c of [onA, onB]) {
    const m = await c.nextMessage('dm:alice:bob', (x) => x.text === 'hello alice from node2', LOAD_TIMEOUT);
    assert.equal(m.seq, back.seq);
  }
  assert.equal(back.seq, sent.seq + 1, 'one dm room, one sequence across nodes');

  // A ban stored on node0 takes the guest out of the room on node1, and node1 refuses its join:
  // the nodes agree on who is banned.
  const maker = await login(nodes[0], 'maker');
  t.after(() => maker.terminate());
  const target = ws.find((w) => w.node === nodes[1] && w.rooms.has('room2'));
  assert.ok(target, 'a guest on node1 in room2');
  await maker.join('room2');
  await maker.expect({ type: 'ban', room: 'room2', user: target.name, reason: 'across' }, 'ack');
  const kicked = await target.client.next((m) => m.type === 'kicked' && m.room === 'room2', LOAD_TIMEOUT, 'kicked from room2');
  assert.deepEqual(kicked, { type: 'kicked', room: 'room2', by: 'maker', reason: 'across', banned: true });
  const refused = await target.client.request({ type: 'join', room: 'room2' });
  assert.equal(refused.type, 'error');
  assert.equal(refused.code, 'banned');

  // A registered user's join is checked against the bans in the store too, not only against a
  // node's copy of them: a ban row node1 never heard of (written behind its back) still holds.
  pg.query("INSERT INTO room_bans(room, name_lc, until_ms) VALUES ('room3', 'bob', 0)");
  const banned = await bob.request({ type: 'join', room: 'room3' });
  assert.equal(banned.type, 'error', JSON.stringify(banned));
  assert.equal(banned.code, 'banned');
  assert.equal(banned.message, 'banned from #room3');
});
