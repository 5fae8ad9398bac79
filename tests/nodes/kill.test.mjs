// kill -9 of one node mid-load (three nodes on one real PostgreSQL and one real Redis, started
// here): its WebSocket clients resume on the other nodes as a real client does (token login, join
// with `since` their last seq, every unacked message sent again with its cid) and nothing is lost,
// duplicated or reordered for anyone; a retry of a message the dead node had stored is acked with
// its first seq; its users that do not come back go offline on the other nodes within the lease.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, ms, withTimeout } from '../chat/lib/chat.mjs';
import { esc } from '../chat/lib/telnet.mjs';
import { startCluster } from './lib/cluster.mjs';
import { LOAD_TIMEOUT, makeRooms, openClients, roomNames } from './lib/load.mjs';

const LEASE_S = 1; // --node-lease: a dead node's users are reaped within 3/4 of it
const OFFLINE_BOUND = ms(LEASE_S * 1000 + 3000); // the lease, and a margin for a busy machine
const NODE_ARGS = ['--rate-limit', '0', '--workers', '2', '--node-lease', String(LEASE_S)];
const PER_CLIENT = 12; // messages each WebSocket client sends
const WINDOW = 3; // sends in flight per client, as a client pipelining its outbox
const TAG = 'k';

// Each WebSocket client's plan: its messages, and what became of them.
function plan(w, victim) {
  const rooms = [...w.rooms.keys()];
  w.msgs = Array.from({ length: PER_CLIENT }, (_, k) => ({
    room: rooms[k % rooms.length],
    text: `${TAG} ${w.name} ${k}`,
    cid: `${TAG}-${w.name}-${k}`,
  }));
  w.acked = new Map(); // cid -> seq
  w.sentBefore = new Set(); // cids sent on the connection that died and not acked there
  w.conns = [w.client]; // the old connection, then the one it resumed on
  w.victim = victim;
  w.token = w.client.log.find((m) => m.type === 'welcome').token;
}

// Sends every message of w not yet acked on its current connection, WINDOW at a time; resolves
// when all are acked, rejects when the connection is lost (every request then fails).
async function pump(w, onAck) {
  const c = w.client;
  const queue = w.msgs.filter((m) => !w.acked.has(m.cid));
  let i = 0;
  const lane = async () => {
    while (i < queue.length) {
      const m = queue[i++];
      if (c.closeInfo) throw new Error(`${w.name}: connection lost`);
      if (c === w.conns[0]) w.sentBefore.add(m.cid);
      const reply = await c.request({ type: 'send', room: m.room, text: m.text, cid: m.cid }, { timeoutMs: LOAD_TIMEOUT });
      assert.equal(reply.type, 'ack', `${w.name}: ${JSON.stringify(reply)}`);
      assert.equal(reply.room, m.room);
      w.acked.set(m.cid, reply.seq);
      if (c === w.conns[0]) w.sentBefore.delete(m.cid);
      onAck();
    }
  };
  const lanes = await Promise.allSettled(Array.from({ length: WINDOW }, lane));
  const failed = lanes.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

// The message events of room that w saw, over all its connections, in arrival order.
function seen(w, room) {
  return w.conns.flatMap((c) => c.log.filter((m) => m.type === 'message' && m.room === room));
}

// What a client does when its node is gone: another node, its token, each room again with
// `since` the last seq it saw there.
async function resume(t, w, node) {
  const c = await ChatClient.connect(node, { label: `${w.name} resumed`, timeoutMs: LOAD_TIMEOUT });
  t.after(() => c.terminate());
  w.conns.push(c);
  w.client = c;
  const welcome = await c.expect({ type: 'login', token: w.token }, 'welcome', { timeoutMs: LOAD_TIMEOUT });
  assert.equal(welcome.name, w.name);
  for (const [room, joinSeq] of w.rooms) {
    const since = seen(w, room).at(-1)?.seq ?? joinSeq;
    await c.expect({ type: 'join', room, since }, 'joined', { timeoutMs: LOAD_TIMEOUT });
  }
}

// One WebSocket client through the load: sends everything; on the killed node it waits for the
// connection to drop, and either resumes on another node and sends the rest, or stays away.
async function drive(t, w, survivors, onAck) {
  try {
    await pump(w, onAck);
  } catch (err) {
    if (!w.victim || !w.client.closeInfo) throw err;
  }
  if (!w.victim) return;
  await withTimeout(w.client.closed, LOAD_TIMEOUT, `${w.name}: its node's death`);
  if (!w.resumes) return;
  await resume(t, w, survivors[w.index % survivors.length]);
  await pump(w, onAck);
}

test('kill -9 of one node mid-load: its clients resume on the others with nothing lost, its users go offline elsewhere within the lease', async (t) => {
  const rooms = roomNames(5); // prime to the 3 nodes: every room has members on each
  const { nodes, pg } = await startCluster(t, 3, { args: NODE_ARGS, before: (n) => makeRooms(n, rooms) });
  const { ws, telnet } = await openClients(t, nodes, 60, rooms, 'k');
  const victimNode = nodes[2];
  const survivors = [nodes[0], nodes[1]];
  for (const w of ws) {
    plan(w, w.node === victimNode);
    w.resumes = w.victim && w.index % 4 !== 0; // a quarter of them never come back
    // Half of those that come back lose the acks of what the node stored just before it died.
    w.losesAcks = w.resumes && w.index % 2 === 0;
  }
  const gone = ws.filter((w) => w.victim && !w.resumes);
  const resumed = ws.filter((w) => w.resumes);
  const stayed = ws.filter((w) => !w.victim);
  const goneTelnet = telnet.filter((tc) => tc.node === victimNode);
  const stayedTelnet = telnet.filter((tc) => tc.node !== victimNode);
  assert.ok(gone.length > 0 && resumed.length > 0 && goneTelnet.length > 0 && stayedTelnet.length > 0);
  // A member of room on each surviving node, there from the start.
  const watchers = (room) =>
    survivors.map((node) => stayed.find((w) => w.node === node && w.rooms.has(room))).filter(Boolean);

  // kill -9 once a third of all messages are acked: every client is mid-way.
  let acked = 0;
  let third;
  const thirdAcked = new Promise((resolve) => (third = resolve));
  const onAck = () => ++acked === Math.floor((ws.length * PER_CLIENT) / 3) && third();
  const load = Promise.all(ws.map((w) => drive(t, w, survivors, onAck)));
  await Promise.race([thirdAcked, load]); // a failure of the load ends the wait too
  // Those losing their acks hear nothing more from the node (their connection is dead one way);
  // what they have in flight is stored and delivered to the others (awaited at a member of its
  // room on another node), its acks lost with the node.
  const losing = ws.filter((w) => w.losesAcks);
  for (const w of losing) w.client.ignore = () => true;
  for (const w of losing) {
    w.storedBefore = new Map(); // cid -> the seq the others got it with
    for (;;) {
      const more = [...w.sentBefore].filter((cid) => !w.storedBefore.has(cid));
      if (more.length === 0) break;
      for (const cid of more) {
        const room = w.msgs.find((m) => m.cid === cid).room;
        const at = watchers(room)[0].client;
        const got = at.log.find((m) => m.type === 'message' && m.cid === cid) ??
          (await at.next((m) => m.type === 'message' && m.cid === cid, LOAD_TIMEOUT, `${cid} delivered`));
        w.storedBefore.set(cid, got.seq);
      }
    }
  }
  await victimNode.kill();
  const killedAt = Date.now();

  // Its users that do not come back go offline in each of their rooms on both other nodes, within
  // the lease (from the kill).
  const offline = [];
  const away = [
    ...gone.map((w) => ({ name: w.name, rooms: [...w.rooms.keys()] })),
    ...goneTelnet.map((tc) => ({ name: tc.name, rooms: ['general'] })),
  ];
  for (const user of away) {
    for (const room of user.rooms) {
      const both = watchers(room);
      assert.equal(both.length, 2, `a watcher of ${room} on each surviving node`);
      for (const w of both) {
        offline.push(
          w.client.next(
            (m) => m.type === 'presence' && m.room === room && m.user === user.name && m.state === 'offline',
            Math.max(0, killedAt + OFFLINE_BOUND - Date.now()),
            `${user.name} offline in ${room}, at ${w.name}, within ${OFFLINE_BOUND} ms of the kill`,
          ),
        );
      }
    }
  }
  await Promise.all(offline);
  await load;

  // The store: every acked message exactly once, with the acked seq; no cid twice.
  const rows = pg
    .query(`SELECT room, seq, cid, text FROM events WHERE room IN (${rooms.map((r) => `'${r}'`).join(',')}) ORDER BY room, seq`)
    .split('\n')
    .map((l) => l.split('|'))
    .map(([room, seq, cid, text]) => ({ room, seq: Number(seq), cid, text }));
  const byCid = new Map();
  for (const r of rows) {
    if (!r.cid) continue;
    assert.ok(!byCid.has(r.cid), `cid ${r.cid} stored twice`);
    byCid.set(r.cid, r);
  }
  let retried = 0;
  let retriedStored = 0;
  for (const w of ws) {
    if (!w.victim || w.resumes) assert.equal(w.acked.size, PER_CLIENT, `${w.name}: every message acked`);
    for (const [cid, seq] of w.acked) {
      const row = byCid.get(cid);
      assert.ok(row, `acked ${cid} is stored`);
      assert.equal(row.seq, seq, `${cid}: acked with the seq it is stored at`);
    }
    // A message sent before the kill and retried after it: acked with one seq, the stored one,
    // and the very one the client saw it delivered with, if it did.
    for (const cid of w.sentBefore) {
      if (!w.resumes) continue;
      retried++;
      const before = w.storedBefore?.get(cid) ?? w.conns[0].log.find((m) => m.type === 'message' && m.cid === cid)?.seq;
      if (before === undefined) continue;
      retriedStored++;
      assert.equal(w.acked.get(cid), before, `${cid}: the retry is acked with the first seq`);
    }
  }
  assert.ok(retried > 0, 'messages in flight at the kill were retried by cid');
  assert.ok(retriedStored > 0, 'messages the dead node stored, their acks lost, were retried by cid');

  // Every client still here and every resumed one saw every event of its rooms after its join
  // exactly once, in seq order, as stored (across its two connections for a resumed one).
  const stored = new Map(rooms.map((room) => [room, rows.filter((r) => r.room === room)]));
  await Promise.all(
    [...stayed, ...resumed].map(async (w) => {
      for (const [room, joinSeq] of w.rooms) {
        const want = stored.get(room).filter((r) => r.seq > joinSeq);
        const last = want.at(-1).seq;
        if (!seen(w, room).some((m) => m.seq === last)) {
          await w.client.next((m) => m.type === 'message' && m.room === room && m.seq === last, LOAD_TIMEOUT, `${room} seq ${last}`);
        }
        const got = seen(w, room);
        assert.deepEqual(got.map((m) => m.seq), want.map((r) => r.seq), `${w.name} (${room}): every seq once, in order`);
        assert.deepEqual(got.map((m) => m.text), want.map((r) => r.text), `${w.name} (${room}): the stored texts`);
      }
    }),
  );
  // Telnet guests on the surviving nodes: every line of general once, in seq order.
  const general = stored.get('general').filter((r) => r.cid?.startsWith(`${TAG}-`));
  const texts = new Set(general.map((r) => r.text));
  await Promise.all(
    stayedTelnet.map(async (tc) => {
      const lastText = general.at(-1).text;
      if (!tc.client.lines.some((l) => l.text.endsWith(`: ${lastText}`))) {
        await tc.client.nextLine(new RegExp(`: ${esc(lastText)}$`), LOAD_TIMEOUT, `the line of ${lastText}`);
      }
      const got = tc.client.lines.map((l) => /^\[#general\] [^:]+: (.*)$/.exec(l.text)?.[1]).filter((x) => x !== undefined && texts.has(x));
      assert.deepEqual(got, general.map((r) => r.text), `${tc.name}: every line of general once, in seq order`);
    }),
  );

  // Every node left agrees on who is in each room: everyone still here and everyone resumed, and
  // none of the users that did not come back.
  const stayedNames = (room) => [
    ...[...stayed, ...resumed].filter((w) => w.rooms.has(room)).map((w) => w.name),
    ...(room === 'general' ? stayedTelnet.map((tc) => tc.name) : []),
  ];
  for (const node of survivors) {
    const asker = stayed.find((w) => w.node === node);
    for (const room of rooms) {
      const who = await asker.client.expect({ type: 'who', room }, 'members');
      assert.deepEqual([...who.members].sort(), stayedNames(room).sort(), `who ${room} on node${nodes.indexOf(node)}`);
    }
  }
});
