// A live upgrade of one node of two on one real PostgreSQL and one real Redis (both started
// here), mid-traffic: node 0's new process opens its own store and broker connections, keeps the
// node's lease and its users online, follows the same rooms (and a joined DM room) on from where
// the old process delivered. Its WebSocket and telnet connections are never closed; every client
// on both nodes gets every event of its rooms exactly once in seq order; nobody is seen going
// offline anywhere; `who` is right on both nodes; /healthz of the new process names the node
// with its store and broker up. DMs cross the nodes all through it, in a DM room its users joined
// and in one they never joined, and the new process's subscriptions to its users' channels are
// held (a proxy) until the other node has stored DMs after the handover: each moved connection
// gets them from the store (record version 6 carries its place in the room never joined), once
// and in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { ChatClient, PASSWORD, dmRoom, eventually, ms } from '../chat/lib/chat.mjs';
import { ChatServer } from '../chat/lib/server.mjs';
import { esc } from '../chat/lib/telnet.mjs';
import { holdingProxy, startPg, startRedis } from './lib/cluster.mjs';
import { LOAD_TIMEOUT, assertDelivered, assertDistinctSeqs, makeRooms, openClients, roomNames, sendAll } from './lib/load.mjs';
import { Lineage, assertRun, gone, EXIT_MARGIN } from '../upgrade/lib/upgrade.mjs';

// A short lease, so that a gap in the node's refreshes across the upgrade would show as its
// users going offline on the other node within this test.
const LEASE_S = 1;
const NODE_ARGS = ['--rate-limit', '0', '--workers', '2', '--node-lease', String(LEASE_S)];
const PER_CLIENT = 9; // messages each WebSocket client sends
const TELNET_LINES = 6; // lines each telnet client types
const DMS = 8; // direct messages each DM stream sends at least

async function healthz(port) {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { http: res.status, body: await res.json() };
}

// A registered user on node, logged in (DMs are between registered users).
async function member(t, node, name) {
  const c = await ChatClient.connect(node, { label: name, timeoutMs: LOAD_TIMEOUT });
  t.after(() => c.terminate());
  await c.register(name, PASSWORD);
  await c.login(name, PASSWORD);
  return c;
}

// A telnet client types its lines one after the other into general, each awaited as echoed.
async function typeLines(tc, n) {
  tc.typed = [];
  for (let k = 0; k < n; k++) {
    const text = `t ${tc.name} ${k}`;
    await tc.client.send(text);
    await tc.client.nextLine(new RegExp(`^\\[#general\\] ${esc(tc.name)}: ${esc(text)}$`), LOAD_TIMEOUT, `the echo of ${text}`);
    tc.typed.push(text);
  }
}

// A user sends DMs to another with cids, one after the other: n, then, with resume, n more once
// it resolves, else on until over() is true (tag tells its streams apart). Resolves with the acks.
async function sendDms(from, to, n, { over = () => true, resume = null, tag = '', onAck = () => {} } = {}) {
  const acks = [];
  for (let k = 0; k < (resume ? 2 * n : n) || (!resume && !over()); k++) {
    if (k === n && resume) await resume;
    const text = `dm ${from.name}${tag} ${k}`;
    const reply = await from.request({ type: 'send', to: to.name, text, cid: `dm-${from.name}${tag}-${k}` }, { timeoutMs: LOAD_TIMEOUT });
    assert.equal(reply.type, 'ack', `${from.name}: ${JSON.stringify(reply)}`);
    acks.push({ seq: reply.seq, text });
    onAck();
  }
  return acks;
}

test('live upgrade of one node of two on PostgreSQL + Redis mid-traffic: nothing closed, lost, doubled or offline', { timeout: ms(120000) }, async (t) => {
  const pg = startPg();
  const redis = await startRedis();
  let lineage;
  let other;
  const clients = []; // closed first: a node stopping with none open stops at once
  t.after(async () => {
    const errors = [];
    try {
      for (const c of clients) (c.terminate ?? c.destroy).call(c);
      // A clean stop of both nodes (under ASan, a leak or a fault fails the test).
      if (lineage) await lineage.dispose().catch((err) => errors.push(err));
      if (other) {
        const info = await other.stop();
        rmSync(other.dataDir, { recursive: true, force: true });
        if (info.code !== 0) errors.push(new Error(`node1 stopped with ${JSON.stringify(info)}:\n${other.stderr().slice(-4000)}`));
        const report = other.stderr().match(/^.*(AddressSanitizer|LeakSanitizer|runtime error:).*$/m);
        if (report) errors.push(new Error(`node1 reported: ${report[0]}`));
      }
    } finally {
      await other?.kill();
      await redis.stop();
      rmSync(redis.dir, { recursive: true, force: true });
      pg.stop();
    }
    if (errors.length) throw errors[0];
  });
  // Node 0 reaches Redis through a proxy that can hold what its new process sends (below).
  const proxy = await holdingProxy(t, redis.port);
  const nodeArgs = (i) => ['--store', pg.url, '--broker', i === 0 ? proxy.url : redis.url, '--node', `node${i}`, ...NODE_ARGS];
  // Node 0 first (it migrates the schema), its rooms made, then node 1.
  lineage = await Lineage.start(null, nodeArgs(0));
  const n0 = lineage.server;
  await lineage.waitLog(null, 'broker_up', {}, ms(15000));
  const rooms = roomNames(5);
  await makeRooms(n0, rooms);
  other = await ChatServer.start(nodeArgs(1));
  await other.waitForLog((l) => l.fields.msg === 'broker_up', ms(15000), 'node1: msg=broker_up');
  const nodes = [n0, other];

  // Clients on both nodes, each node with a telnet guest in general (openClients puts every
  // tenth client on telnet, on the second node of its list).
  const a = await openClients(t, [n0, other], 20, rooms, 'a');
  const b = await openClients(t, [other, n0], 10, rooms, 'b');
  const ws = [...a.ws, ...b.ws];
  const telnet = [...a.telnet, ...b.telnet];
  assert.ok(telnet.some((tc) => tc.node === n0) && telnet.some((tc) => tc.node === other));
  clients.push(...ws.map((w) => w.client), ...telnet.map((tc) => tc.client));
  // Two DM pairs across the nodes: one whose users joined their DM room, one whose users did not
  // (a DM reaches every connection of its users either way).
  const pairs = [];
  for (const [tag, joinIt] of [['j', true], ['u', false]]) {
    const x = await member(t, n0, `${tag}amy${process.pid % 1000}`);
    const y = await member(t, other, `${tag}bob${process.pid % 1000}`);
    clients.push(x, y);
    const room = dmRoom(x.name, y.name);
    if (joinIt) for (const c of [x, y]) await c.join(room);
    // One DM before the upgrade, awaited on both sides: the room exists from here on. y's
    // account reaches node 0 through Redis after its registration is answered: until then the
    // DM is refused as to no such user (nothing stored), and asked again.
    const opening = await eventually(async () => {
      const reply = await x.request({ type: 'send', to: y.name, text: `${tag} dm opening`, cid: `dm-${tag}-open` }, { timeoutMs: LOAD_TIMEOUT });
      if (reply.type === 'ack') return reply;
      assert.equal(reply.code, 'no_such_user', `${x.name}: ${JSON.stringify(reply)}`);
      return null;
    }, LOAD_TIMEOUT, `node 0 to know ${y.name}`);
    for (const c of [x, y]) await c.nextMessage(room, (m) => m.seq === opening.seq, LOAD_TIMEOUT);
    pairs.push({ x, y, room, opening, joined: joinIt });
  }
  // Everyone a member sees on each node: who before the upgrade, to compare after.
  const expectedMembers = (room) => [
    ...ws.filter((w) => w.rooms.has(room)).map((w) => w.name),
    ...(room === 'general' ? telnet.map((tc) => tc.name) : []),
  ].sort();
  const whoOn = async (node, room) => {
    const w = ws.find((x) => x.node === node && x.rooms.has(room));
    return w ? [...(await w.client.expect({ type: 'who', room }, 'members', { timeoutMs: LOAD_TIMEOUT })).members].sort() : null;
  };
  // Another node's members reach a node through Redis after their joins are answered: each node
  // is awaited until it lists them all (a state that settles), then compared.
  for (const room of rooms) {
    for (const node of nodes) {
      const same = async () => JSON.stringify(await whoOn(node, room)) === JSON.stringify(expectedMembers(room));
      if (!ws.some((x) => x.node === node && x.rooms.has(room))) continue;
      await eventually(same, LOAD_TIMEOUT, `who ${room} on ${node === n0 ? 'node0' : 'node1'} to list every member`).catch(() => {});
      const got = await whoOn(node, room);
      assert.deepEqual(got, expectedMembers(room), `who ${room} on ${node === n0 ? 'node0' : 'node1'} before the upgrade`);
    }
  }

  // Traffic on both nodes; node 0 is upgraded once a third of the WebSocket sends are acked.
  let third;
  const thirdAcked = new Promise((resolve) => (third = resolve));
  const total = ws.length * PER_CLIENT;
  const load = sendAll(ws, PER_CLIENT, { tag: 'u', onAck: (n) => n === Math.floor(total / 3) && third() });
  const typing = Promise.all(telnet.map((tc) => typeLines(tc, TELNET_LINES)));
  // Node 1's users send DMs all through the upgrade, until node 0 has handed over and the hold
  // below is over (four streams each); node 0's send theirs before it and after it: what node 1
  // stores meanwhile is all the rooms have, and the new process must deliver it from the store.
  let handedOver = false;
  let released;
  let isReleased = false;
  const resume = new Promise((resolve) => (released = resolve)).then(() => (isReleased = true));
  const fromNode1 = [0, 0]; // DMs node 1 has stored, per pair
  const dms = Promise.all(pairs.map((p, i) => Promise.all([
    sendDms(p.x, p.y, DMS, { resume }),
    ...[0, 1, 2, 3].map((k) => sendDms(p.y, p.x, DMS, { over: () => handedOver && isReleased, tag: `/${k}`, onAck: () => fromNode1[i]++ })),
  ])));
  await Promise.race([thirdAcked, load]);
  // What node 0's new process's subscriber sends Redis from its first subscription to a user's
  // channel on (as it takes the connections over) is held until node 1 has stored DMs after the
  // handover in both rooms: it hears of none of those, so it must find them in the store. Its
  // commands (lease, members, guests' names) go through, so nobody goes offline meanwhile, however
  // long the hold. Node 0's users send again once it is over.
  proxy.holdNew(':u:');
  const upgrading = lineage.upgrade().finally(() => (handedOver = true));
  const adopted = await lineage.waitLog(null, 'handover_records', {}, LOAD_TIMEOUT);
  const stored = [...fromNode1];
  await eventually(() => fromNode1.every((n, i) => n > stored[i]), LOAD_TIMEOUT, 'node 1 to store DMs in both rooms after the handover');
  proxy.release();
  released();
  const { oldPid, newPid } = await upgrading;
  assert.equal(adopted.fields.pid, String(newPid), 'the new process logged the handover');
  const [{ acks, busy }, , dmAcks] = await Promise.all([load, typing, dms]);
  assert.equal(busy, 0, 'no send was refused as busy across the upgrade');
  assert.ok(lineage.lines(newPid).some((l) => l.fields.msg === 'broker_up'), 'the new process started its own broker');
  await gone(oldPid, EXIT_MARGIN, 'the old process to exit once it holds nothing');

  // No connection of node 0 (nor of node 1) was closed.
  for (const w of [...ws, ...pairs.flatMap((p) => [p.x, p.y]).map((c) => ({ client: c, name: c.name }))]) {
    assert.ok(w.client.isOpen, `${w.name} is open`);
    assert.equal(w.client.closeInfo, null, `${w.name} saw no close`);
  }
  for (const tc of telnet) assert.equal(tc.client.ended, false, `telnet ${tc.name} is open`);

  // Every client got every message of its rooms exactly once in seq order.
  assertDistinctSeqs(acks);
  await assertDelivered(ws, telnet, acks, { typedIn: new Set(['general']) });
  // General as a whole (telnet lines included): a reference member on each node has the full run
  // from its join, and every telnet client shows the same texts in that order.
  const typed = new Set(telnet.flatMap((tc) => tc.typed));
  const sentToGeneral = new Set([...(acks.get('general') ?? []).map((x) => x.text), ...typed]);
  for (const node of nodes) {
    const ref = ws.find((w) => w.node === node && w.rooms.has('general'));
    const texts = () => ref.client.log.filter((m) => m.type === 'message' && m.room === 'general');
    for (const text of typed) {
      if (!texts().some((m) => m.text === text)) await ref.client.next((m) => m.type === 'message' && m.text === text, LOAD_TIMEOUT, text);
    }
    const msgs = texts();
    assertRun(msgs.map((m) => m.seq), ref.rooms.get('general'), ref.rooms.get('general') + sentToGeneral.size, `general at ${ref.name}`);
    const order = msgs.map((m) => m.text);
    for (const tc of telnet) {
      const got = tc.client.lines.map((l) => /^\[#general\] [^:]+: (.*)$/.exec(l.text)?.[1]).filter((x) => sentToGeneral.has(x));
      assert.deepEqual(got, order, `telnet ${tc.name}: every line of general once, in seq order`);
    }
  }
  // Each DM room: both users got every message once, in seq order.
  const checkDms = (p, acks, timeoutMs = LOAD_TIMEOUT) => {
    const sent = [{ seq: p.opening.seq, text: `${p.joined ? 'j' : 'u'} dm opening` }, ...acks.flat()].sort((u, v) => u.seq - v.seq);
    const last = sent.at(-1).seq;
    return Promise.all([p.x, p.y].map(async (c) => {
      if (!c.log.some((m) => m.type === 'message' && m.room === p.room && m.seq === last)) await c.nextMessage(p.room, (m) => m.seq === last, timeoutMs);
      const got = c.log.filter((m) => m.type === 'message' && m.room === p.room);
      assertRun(got.map((m) => m.seq), p.opening.seq - 1, last, `${c.name}: the DM room`);
      assert.deepEqual(got.map((m) => m.text), sent.map((x) => x.text), `${c.name}: the DM texts in seq order`);
    }));
  };
  await checkDms(pairs[0], dmAcks[0]);
  // A DM room its users never joined: the record carries where the old process delivered it to
  // each connection (version 6), and the new process catches each one up from there, so what
  // node 1 stored in between reaches node 0's moved connection too, once and in order.
  await t.test('a DM room never joined, across the upgrade', () => checkDms(pairs[1], dmAcks[1], ms(3000)));

  // The old process leaves its lease in Redis, to be reaped one lease later by either node (its
  // users are the new process's by then): awaited, so that what the reap publishes is seen below.
  const reaps = () => [...lineage.lines(), ...other.logLines()].filter((l) => l.fields.msg === 'broker_reaped');
  await eventually(() => reaps().length > 0, ms(LEASE_S * 1000 + 5000), 'the old process\'s lease to be reaped');
  assert.deepEqual(reaps().map((l) => l.fields.nodes), ['1'], 'one lease reaped: the old process\'s, never the new one\'s');
  // who is the same on both nodes as before; nobody was seen going offline, on either.
  for (const room of rooms) {
    for (const node of nodes) {
      const got = await whoOn(node, room);
      if (got) assert.deepEqual(got, expectedMembers(room), `who ${room} on ${node === n0 ? 'node0' : 'node1'} after the upgrade`);
    }
  }
  for (const w of ws) {
    const offline = w.client.log.filter((m) => m.type === 'presence' && m.state === 'offline');
    assert.deepEqual(offline, [], `${w.name} (on ${w.node === n0 ? 'node0' : 'node1'}) saw nobody go offline`);
  }
  // The new process serves node 0, with its store and broker up.
  const { http, body: h } = await healthz(n0.httpPort);
  assert.equal(http, 200);
  assert.equal(h.pid, newPid);
  assert.equal(h.node, 'node0');
  assert.equal(h.store.backend, 'postgres');
  assert.equal(h.store.ok, true);
  assert.equal(h.broker.kind, 'redis');
  assert.equal(h.broker.up, true);
  assert.equal(h.handed_over, ws.filter((w) => w.node === n0).length + telnet.filter((tc) => tc.node === n0).length + pairs.length, 'every connection of node 0 was handed over');
  assert.equal(h.drained, 0);
});

test('a drain-mode upgrade of one node of two: the old process says goodbye once drained, not after the lease', { timeout: ms(90000) }, async (t) => {
  // A lease of 120 s: no reap within the test. The new process is a new node; the old one's
  // clients leave it over --drain-time, and then it deletes its own lease and what it held.
  const pg = startPg();
  const redis = await startRedis();
  let lineage;
  let other;
  t.after(async () => {
    try {
      if (lineage) await lineage.dispose();
      if (other) {
        const info = await other.stop();
        rmSync(other.dataDir, { recursive: true, force: true });
        assert.equal(info.code, 0, `node1 stopped with ${JSON.stringify(info)}`);
      }
    } finally {
      await other?.kill();
      await redis.stop();
      rmSync(redis.dir, { recursive: true, force: true });
      pg.stop();
    }
  });
  const nodeArgs = (i) => ['--store', pg.url, '--broker', redis.url, '--node', `node${i}`, '--node-lease', '120', '--upgrade-mode', 'drain', '--drain-time', '1'];
  lineage = await Lineage.start(null, nodeArgs(0));
  await lineage.waitLog(null, 'broker_up', {}, ms(15000));
  other = await ChatServer.start(nodeArgs(1));
  await other.waitForLog((l) => l.fields.msg === 'broker_up', ms(15000), 'node1: msg=broker_up');
  const guest = await ChatClient.connect(lineage.server, { label: 'g@node0' });
  t.after(() => guest.terminate());
  await guest.login(`g${process.pid}`);
  const { oldPid, newPid } = await lineage.upgrade();
  await lineage.waitLog(newPid, 'broker_up', {}, ms(15000));
  await lineage.waitLog(oldPid, 'broker_goodbye', {}, ms(30000));
  await other.waitForLog((l) => l.fields.msg === 'broker_node_left', ms(10000), "node1 told of the old process's goodbye");
  await gone(oldPid, EXIT_MARGIN, 'the old process to exit');
  const nodes = spawnSync('redis-cli', ['-p', String(redis.port), 'ZCARD', 'parley:nodes'], { encoding: 'utf8' }).stdout.trim();
  assert.equal(nodes, '2', 'node1 and the new process hold leases, the old process none');
});
