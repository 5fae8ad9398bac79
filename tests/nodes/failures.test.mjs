// Several nodes when an engine fails under load (real PostgreSQL and Redis, started here): Redis
// restarted mid-load loses no event and duplicates none at any member, nor any dm at a user whose
// node never joined the dm room, and delivery between the nodes resumes; PostgreSQL stopped for 5 s mid-load answers server_busy, and every message
// retried by its cid is then stored once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, PASSWORD, ms } from '../chat/lib/chat.mjs';
import { startCluster } from './lib/cluster.mjs';
import { LOAD_TIMEOUT, assertDelivered, assertDistinctSeqs, makeRooms, mergeAcks, openClients, roomNames, sendAll } from './lib/load.mjs';

const NODE_ARGS = ['--rate-limit', '0', '--workers', '2'];

async function healthz(node) {
  const res = await fetch(`http://127.0.0.1:${node.httpPort}/healthz`);
  return res.json();
}

function ackedHalf(total) {
  let resolve;
  const half = new Promise((r) => (resolve = r));
  return { half, onAck: (n) => n === Math.floor(total / 2) && resolve() };
}

async function login(node, name) {
  const c = await ChatClient.connect(node, { label: name, timeoutMs: LOAD_TIMEOUT });
  await c.login(name, PASSWORD);
  return c;
}

test('Redis restarted mid-load: no member sees a gap or a duplicate, and delivery across nodes resumes', async (t) => {
  const rooms = roomNames(10);
  const register = async (n) => {
    for (const name of ['alice', 'bob']) {
      const c = await ChatClient.connect(n, { label: name });
      await c.register(name, PASSWORD);
      c.terminate();
    }
  };
  const { nodes, redis } = await startCluster(t, 3, {
    args: NODE_ARGS,
    before: async (n) => {
      await makeRooms(n, rooms);
      await register(n);
    },
  });
  const { ws, telnet } = await openClients(t, nodes, 90, rooms, 'r');
  // Dms from alice on node0 to bob on node1, whose connection never joins the dm room: node1
  // follows it for bob, so a dm lost while Redis is away is filled from the store there too.
  const alice = await login(nodes[0], 'alice');
  const bob = await login(nodes[1], 'bob');
  t.after(() => {
    alice.terminate();
    bob.terminate();
  });
  const dmAcks = [];
  const sendDms = async (from, to) => {
    for (let i = from; i <= to; i++) dmAcks.push(await alice.dm('bob', `dm ${i}`, { cid: `dm-${i}` }));
  };
  for (const node of nodes) {
    const h = await healthz(node);
    assert.equal(h.broker.kind, 'redis');
    assert.equal(h.broker.up, true);
    assert.match(h.node, /^node\d$/);
    assert.equal(h.store.backend, 'postgres');
  }

  const { half, onAck } = ackedHalf(ws.length * 8);
  const load = sendAll(ws, 8, { tag: 'a', onAck });
  await sendDms(1, 10);
  await half;
  await redis.stop();
  await sendDms(11, 20); // stored while Redis is away: never published
  await redis.start();
  const first = await load;

  // Every node lost Redis and came back (its second msg=broker_up).
  await Promise.all(
    nodes.map((node, i) => {
      let ups = 0;
      return node.waitForLog((l) => l.fields.msg === 'broker_up' && ++ups === 2, LOAD_TIMEOUT, `node${i}: broker_up again`);
    }),
  );
  const before = await Promise.all(nodes.map(healthz));
  for (const h of before) {
    assert.equal(h.broker.up, true);
    assert.ok(h.broker.reconnects >= 1, JSON.stringify(h.broker));
  }
  const received = async () => Promise.all(nodes.map(async (n) => {
    const text = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
    return Number(/parley_broker_events_total\{direction="received"\} (\d+)/.exec(text)[1]);
  }));
  const receivedBefore = await received();

  // Live delivery between the nodes goes on: more load, every node hears the others through Redis.
  const second = await sendAll(ws, 4, { tag: 'b' });
  const acks = mergeAcks(first.acks, second.acks);
  assertDistinctSeqs(acks);
  await assertDelivered(ws, telnet, acks);
  await sendDms(21, 30);
  const atBob = await bob.messages('dm:alice:bob', 30, LOAD_TIMEOUT);
  assert.deepEqual(atBob.map((m) => m.text), dmAcks.map((_, i) => `dm ${i + 1}`), 'every dm at bob, in order');
  assert.deepEqual(atBob.map((m) => m.seq), dmAcks.map((a) => a.seq));
  await bob.sync();
  assert.equal(bob.pending().filter((m) => m.room === 'dm:alice:bob').length, 0, 'no dm twice');
  const receivedAfter = await received();
  for (let i = 0; i < nodes.length; i++) {
    assert.ok(receivedAfter[i] > receivedBefore[i], `node${i} received events from the others after Redis came back`);
  }
});

test('PostgreSQL stopped for 5 s mid-load: sends get server_busy, then every retried message is stored once', async (t) => {
  const rooms = roomNames(10);
  const { nodes, pg } = await startCluster(t, 3, { args: NODE_ARGS, before: (n) => makeRooms(n, rooms) });
  const { ws, telnet } = await openClients(t, nodes, 60, rooms, 'p');
  const perClient = 10;
  const { half, onAck } = ackedHalf(ws.length * perClient);
  const load = sendAll(ws, perClient, { tag: 'p', onAck, retryDelayMs: 100 });
  await half;
  pg.halt();
  // The outage lasts 5 s: the scenario itself, not a wait for something to happen.
  await new Promise((resolve) => setTimeout(resolve, ms(5000)));
  pg.resume();
  const { acks, busy } = await load;
  assert.ok(busy > 0, 'sends during the outage were answered server_busy');
  assertDistinctSeqs(acks);
  const stored = pg.query("SELECT count(*) FROM events WHERE cid LIKE 'p-%'");
  assert.equal(Number(stored), ws.length * perClient, 'every message stored once');
  const twice = pg.query('SELECT count(*) FROM (SELECT 1 FROM events WHERE cid IS NOT NULL GROUP BY room, identity, cid HAVING count(*) > 1) d');
  assert.equal(Number(twice), 0);
  await assertDelivered(ws, telnet, acks);
});
