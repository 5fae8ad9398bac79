// Several nodes when an engine fails under load (real PostgreSQL and Redis, started here): Redis
// restarted mid-load loses no event and duplicates none at any member, and delivery between the
// nodes resumes; PostgreSQL stopped for 5 s mid-load answers server_busy, and every message
// retried by its cid is then stored once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ms } from '../chat/lib/chat.mjs';
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

test('Redis restarted mid-load: no member sees a gap or a duplicate, and delivery across nodes resumes', async (t) => {
  const rooms = roomNames(10);
  const { nodes, redis } = await startCluster(t, 3, { args: NODE_ARGS, before: (n) => makeRooms(n, rooms) });
  const { ws, telnet } = await openClients(t, nodes, 90, rooms, 'r');
  for (const node of nodes) {
    const h = await healthz(node);
    assert.equal(h.broker.kind, 'redis');
    assert.equal(h.broker.up, true);
    assert.match(h.node, /^node\d$/);
    assert.equal(h.store.backend, 'postgres');
  }

  const { half, onAck } = ackedHalf(ws.length * 8);
  const load = sendAll(ws, 8, { tag: 'a', onAck });
  await half;
  await redis.restart();
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
