// A node killed between its commit and its PUBLISH: three nodes on one PostgreSQL and one
// redis-server (both started here). The node's write commands are held in Redis (CLIENT PAUSE
// WRITE) while it stores a room's last message, then it is killed with -9, so the message is in
// the store and was never published. Members on the other nodes get it live, once and in order:
// when the node is reaped (every node reads its rooms' newest from the store), or at once when
// the sender retries its cid on another node (acked with the first seq, hinted to every node).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ChatClient, PASSWORD, dmRoom, ms, uniq } from '../chat/lib/chat.mjs';
import { shareEngines } from './lib/cluster.mjs';

const PAUSE_MS = 5000; // the longest Redis holds writes: CLIENT UNPAUSE ends it once the node is dead
// --node-lease of the reap test: its nodes refresh every 0.75 s, so a pause shorter than that
// never leaves a refresh unanswered at the next (which would take a node down); a dead node is
// reaped within 2.25 s.
const LEASE_S = 3;
const REAP_BOUND = ms(LEASE_S * 1000 + 3000); // the lease, and a margin for a busy machine
const engines = shareEngines({ databases: 8 });

// Three nodes of one chat; redis.cli(...) pauses the whole Redis, so every node's writes.
async function cluster(t, leaseS) {
  const nodes = await engines.cluster(t, 3, ['--node-lease', String(leaseS)]);
  return { nodes, redis: engines.redis, store: nodes.store };
}

function psql(url, sql) {
  const r = spawnSync('psql', ['-X', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql ${sql}: ${r.stderr}`);
  return r.stdout.trim();
}

async function userOn(t, server, name) {
  const c = await ChatClient.connect(server, { label: `${name}@${server.args[server.args.indexOf('--node') + 1]}` });
  t.after(() => c.terminate());
  await c.register(name, PASSWORD);
  await c.login(name, PASSWORD);
  return c;
}

// amy on node 0, bob on 1, cat on 2, all in one room; one message gone round. Returns them and
// the room.
async function threeMembers(t, nodes) {
  const room = uniq('last');
  const amy = await userOn(t, nodes[0], uniq('amy'));
  const bob = await userOn(t, nodes[1], uniq('bob'));
  const cat = await userOn(t, nodes[2], uniq('cat'));
  for (const c of [amy, bob, cat]) await c.expect({ type: 'join', room }, 'joined');
  const first = await amy.say(room, 'first', { cid: 'c-first' });
  for (const c of [bob, cat]) await c.nextMessage(room, (m) => m.seq === first.seq);
  return { amy, bob, cat, room };
}

// amy's node stores 'last' (acked, delivered to amy) with its PUBLISH held in Redis, and is
// killed -9 before Redis lets the write through; also(): more sends meanwhile. Returns the ack.
async function commitUnpublishedAndDie({ nodes, redis }, amy, room, also = async () => {}) {
  assert.equal(redis.cli('CLIENT', 'PAUSE', String(PAUSE_MS), 'WRITE'), 'OK');
  let ack;
  try {
    ack = await amy.say(room, 'last', { cid: 'c-last' });
    await amy.nextMessage(room, (m) => m.seq === ack.seq);
    await also();
    await nodes[0].kill();
  } finally {
    redis.cli('CLIENT', 'UNPAUSE');
  }
  return ack;
}

// Every message bob and cat got in room: exactly the stored ones, each once, in seq order.
function assertOnceInOrder(clients, room, texts) {
  for (const c of clients) {
    const got = c.log.filter((m) => m.type === 'message' && m.room === room);
    assert.deepEqual(got.map((m) => m.text), texts, `${c.label}: every message once, in order`);
    assert.deepEqual(got.map((m) => m.seq), got.map((_, i) => got[0].seq + i), `${c.label}: consecutive seqs`);
  }
}

// The survivors held out the pause (a lease refresh stuck behind it would take a node down, and
// its catch-up on return would deliver the message whatever this test is about).
function assertNoneWentDown(nodes) {
  for (const s of nodes) {
    assert.ok(!s.logLines().some((l) => l.fields.msg === 'broker_down'), `${s.args.join(' ')}: no broker_down`);
  }
}

test('a room\'s last message, stored by a node killed before it published it, reaches the other nodes\' members when the node is reaped', async (t) => {
  const c3 = await cluster(t, LEASE_S);
  const { nodes } = c3;
  const { amy, bob, cat, room } = await threeMembers(t, nodes);
  // A dm from amy to bob too: the dm room is followed on bob's node from its first event.
  const dm = dmRoom(amy.name, bob.name);
  const dmFirst = await amy.dm(bob.name, 'dm first');
  await bob.nextMessage(dm, (m) => m.seq === dmFirst.seq);
  let dmLast;
  const ack = await commitUnpublishedAndDie(c3, amy, room, async () => {
    dmLast = await amy.dm(bob.name, 'dm last', { cid: 'c-dm-last' });
  });
  // Within the lease and a margin: the reap makes every node read its rooms' newest.
  const killedAt = Date.now();
  const left = () => Math.max(0, killedAt + REAP_BOUND - Date.now());
  for (const c of [bob, cat]) {
    const m = await c.nextMessage(room, (x) => x.seq === ack.seq, left());
    assert.equal(m.text, 'last');
  }
  const m = await bob.nextMessage(dm, (x) => x.seq === dmLast.seq, left());
  assert.equal(m.text, 'dm last');
  assertOnceInOrder([bob], dm, ['dm first', 'dm last']);
  for (const s of nodes.slice(1)) {
    await s.waitForLog((l) => l.fields.msg === 'broker_node_dead', left(), 'msg=broker_node_dead');
  }
  assertNoneWentDown(nodes.slice(1));

  // amy resumes on node 1 and retries the cid: the first seq, and nothing doubled.
  const again = await ChatClient.connect(nodes[1], { label: 'amy again' });
  t.after(() => again.terminate());
  await again.login(amy.name, PASSWORD);
  await again.expect({ type: 'join', room, since: ack.seq }, 'joined');
  const retry = await again.say(room, 'last', { cid: 'c-last' });
  assert.equal(retry.seq, ack.seq, 'the retry is acked with the first seq');
  const next = await bob.say(room, 'next');
  for (const c of [cat, again]) await c.nextMessage(room, (m) => m.seq === next.seq);
  assertOnceInOrder([bob, cat], room, ['first', 'last', 'next']);
  const stored = psql(c3.store, `SELECT count(*) FROM events WHERE room = '${room}' AND cid = 'c-last'`);
  assert.equal(stored, '1', 'stored once');
});

test('a cid retry on another node of a message its dead node never published delivers it there and elsewhere before any reap', async (t) => {
  const c3 = await cluster(t, 30); // no reap within this test: only the retry can tell
  const { nodes } = c3;
  const { amy, bob, cat, room } = await threeMembers(t, nodes);
  const ack = await commitUnpublishedAndDie(c3, amy, room);

  const again = await ChatClient.connect(nodes[1], { label: 'amy again' });
  t.after(() => again.terminate());
  await again.login(amy.name, PASSWORD);
  await again.expect({ type: 'join', room, since: ack.seq - 1 }, 'joined');
  const retry = await again.say(room, 'last', { cid: 'c-last' });
  assert.equal(retry.seq, ack.seq, 'the retry is acked with the first seq');
  for (const c of [bob, cat]) {
    const m = await c.nextMessage(room, (x) => x.seq === ack.seq);
    assert.equal(m.text, 'last');
  }
  for (const s of nodes.slice(1)) {
    assert.ok(!s.logLines().some((l) => l.fields.msg === 'broker_node_dead' || l.fields.msg === 'broker_reaped'),
      'delivered before the dead node was reaped');
  }
  assertNoneWentDown(nodes.slice(1));
  const next = await bob.say(room, 'next');
  for (const c of [cat, again]) await c.nextMessage(room, (m) => m.seq === next.seq);
  assertOnceInOrder([bob, cat], room, ['first', 'last', 'next']);
  // The resumed connection: joined since before 'last', it got it once (replayed or live).
  const mine = again.log.filter((m) => m.type === 'message' && m.room === room).map((m) => m.text);
  assert.deepEqual(mine, ['last', 'next'], 'the resumed sender: once, in order');
});
