// Ordering with --workers 2: concurrent senders on both workers, seq order everywhere, no gap or
// duplicate; joins with since during a flood (rule 22); resume after a dropped connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { LONG_TIMEOUT, assertSeqRun, connect, uniqRoom, user } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--workers', '2', '--rate-limit', '0']);
});

after(() => server?.dispose());

const CLIENTS = 8;
const PER_CLIENT = 30;

// `n` users joined to `room`, each on its own connection (so they spread over both workers).
async function members(t, room, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const c = await user(server, t);
    await c.join(room);
    out.push(c);
  }
  return out;
}

test(`${CLIENTS} clients × ${PER_CLIENT} concurrent sends: everyone sees seq 1..N once, in order; acks are exactly 1..N`, async (t) => {
  const room = uniqRoom();
  const clients = await members(t, room, CLIENTS);
  const total = CLIENTS * PER_CLIENT;
  const ackLists = await Promise.all(
    clients.map(async (c, ci) => {
      const pending = [];
      for (let i = 0; i < PER_CLIENT; i++) pending.push(c.say(room, `c${ci} m${i}`, { cid: `c${ci}-${i}` }));
      return Promise.all(pending);
    }),
  );
  const ackSeqs = ackLists.flat().map((a) => a.seq).sort((x, y) => x - y);
  assert.deepEqual(ackSeqs, Array.from({ length: total }, (_, i) => i + 1), 'ack seqs are not exactly 1..N');
  const views = await Promise.all(clients.map((c) => c.messages(room, total, LONG_TIMEOUT)));
  for (const [ci, view] of views.entries()) assertSeqRun(view, room, 1, total, `client ${ci}`);
  // Every client saw the same message under each seq; the ack's seq is that message's seq.
  const reference = views[0];
  for (const view of views.slice(1)) assert.deepEqual(view, reference);
  for (const [ci, acks] of ackLists.entries()) {
    for (const [i, ack] of acks.entries()) {
      const m = reference[ack.seq - 1];
      assert.equal(m.text, `c${ci} m${i}`, `ack seq ${ack.seq} does not name the message sent`);
      assert.equal(m.from, clients[ci].name);
      assert.equal(m.cid, `c${ci}-${i}`);
    }
  }
  // Nothing more arrives: a marker is the next message everywhere.
  await clients[0].say(room, 'end');
  for (const c of clients) {
    const { match, before } = await c.until((m) => m.type === 'message' && m.text === 'end');
    assert.equal(match.seq, total + 1);
    assert.deepEqual(before.filter((m) => m.type === 'message'), [], `${c.label}: extra messages`);
  }
});

// A worker writes a batch's run of one room's messages to each member as one piece (a wave), and
// one by one to members that need each alone (here: permessage-deflate). Either way each
// connection sees what it would one message at a time: every seq once, in order, and its own
// message before the answer to its send.
test('everyone sending at once, wave and one-by-one members alike: 1..N once each, each sender\'s message before its ack', async (t) => {
  const room = uniqRoom();
  const clients = [];
  for (let i = 0; i < 8; i++) {
    const c = await user(server, t, undefined, undefined, i % 3 === 2 ? { perMessageDeflate: { threshold: 0 } } : {});
    await c.join(room);
    clients.push(c);
  }
  const per = 25;
  const total = clients.length * per;
  await Promise.all(clients.map((c, ci) => Promise.all(Array.from({ length: per }, (_, i) => c.say(room, `w${ci}-${i}`)))));
  const views = await Promise.all(clients.map((c) => c.messages(room, total, LONG_TIMEOUT)));
  for (const [ci, view] of views.entries()) assertSeqRun(view, room, 1, total, `client ${ci}`);
  for (const c of clients) {
    const seen = new Set();
    for (const m of c.log) {
      if (m.type === 'message' && m.room === room) seen.add(m.seq);
      if (m.type === 'ack' && m.seq) assert.ok(seen.has(m.seq), `${c.label}: the ack of seq ${m.seq} came before the message`);
    }
  }
});

test('one connection\'s pipelined sends get increasing seqs in the order sent', async (t) => {
  const room = uniqRoom();
  const clients = await members(t, room, 4);
  const ackLists = await Promise.all(
    clients.map((c, ci) => Promise.all(Array.from({ length: 25 }, (_, i) => c.say(room, `${ci}:${i}`)))),
  );
  for (const [ci, acks] of ackLists.entries()) {
    const seqs = acks.map((a) => a.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), `client ${ci}: seqs not in send order: ${seqs}`);
  }
});

test('concurrent senders in several rooms: each room has its own 1..N, in order everywhere', async (t) => {
  const rooms = [uniqRoom(), uniqRoom(), uniqRoom()];
  const clients = [];
  for (let i = 0; i < 6; i++) {
    const c = await user(server, t);
    for (const room of rooms) await c.join(room);
    clients.push(c);
  }
  await Promise.all(
    clients.flatMap((c, ci) => rooms.map((room) => Promise.all(Array.from({ length: 10 }, (_, i) => c.say(room, `${ci}-${i}`))))),
  );
  const total = clients.length * 10;
  for (const c of clients) {
    for (const room of rooms) assertSeqRun(await c.messages(room, total, LONG_TIMEOUT), room, 1, total, `${c.label} ${room}`);
  }
});

test('rule 22: messages accepted while a join with since replays come after the replay, in order, once', async (t) => {
  const room = uniqRoom();
  const senders = await members(t, room, 3);
  for (let i = 0; i < 100; i++) await senders[i % 3].say(room, `pre ${i}`);
  const sinces = [0, 10, 50, 99];
  const joinerUsers = [];
  for (let k = 0; k < sinces.length; k++) joinerUsers.push(await user(server, t));
  const flood = senders.map((s, si) =>
    Promise.all(Array.from({ length: 150 }, (_, i) => s.say(room, `during ${si}-${i}`))),
  );
  // Joins with since while the flood runs, on both workers.
  const joiners = await Promise.all(
    joinerUsers.map(async (j, k) => {
      const joined = await j.join(room, sinces[k]);
      assert.ok(joined.seq >= 100);
      return { j, since: sinces[k] };
    }),
  );
  await Promise.all(flood);
  const total = 100 + 3 * 150;
  for (const { j, since } of joiners) {
    assertSeqRun(await j.messages(room, total - since, LONG_TIMEOUT), room, since + 1, total, `joiner since=${since}`);
  }
  await senders[0].say(room, 'last');
  for (const { j } of joiners) {
    const { match, before } = await j.until((m) => m.type === 'message' && m.text === 'last');
    assert.equal(match.seq, total + 1);
    assert.deepEqual(before.filter((m) => m.type === 'message'), []);
  }
});

test('resume after a dropped connection: token login, re-join with since → no gap, no duplicate', async (t) => {
  const room = uniqRoom();
  const [a, b] = await members(t, room, 2);
  for (let i = 1; i <= 10; i++) await b.say(room, `before ${i}`);
  const seen = await a.messages(room, 10);
  const last = seen.at(-1).seq;
  a.terminate();
  await a.closed;
  for (let i = 1; i <= 10; i++) await b.say(room, `while away ${i}`);
  const a2 = await connect(server, t);
  await a2.loginToken(a.token);
  const j = await a2.join(room, last);
  assert.equal(j.seq, 20);
  const replay = await a2.messages(room, 10);
  assertSeqRun(replay, room, 11, 20, 'resume replay');
  assert.deepEqual(replay.map((m) => m.text), Array.from({ length: 10 }, (_, i) => `while away ${i + 1}`));
  await b.say(room, 'live again');
  const live = await a2.nextMessage(room);
  assert.equal(live.seq, 21);
});

test('resume while others keep sending: drop mid-flood, re-join with since → every seq exactly once', async (t) => {
  const room = uniqRoom();
  const [a, ...senders] = await members(t, room, 4);
  const total = 3 * 80;
  const got = [];
  const floods = senders.map((s, si) => Promise.all(Array.from({ length: 80 }, (_, i) => s.say(room, `${si}/${i}`))));
  // a reads 60 messages, then drops while the senders go on.
  while (got.length < 60) got.push((await a.nextMessage(room, undefined, LONG_TIMEOUT)).seq);
  const dropAt = got.at(-1);
  a.terminate();
  const a2 = await connect(server, t);
  await a2.loginToken(a.token);
  await a2.join(room, dropAt);
  while (got.length < total) got.push((await a2.nextMessage(room, undefined, LONG_TIMEOUT)).seq);
  await Promise.all(floods);
  assert.deepEqual(got, Array.from({ length: total }, (_, i) => i + 1), 'gap or duplicate across the reconnect');
  await senders[0].say(room, 'after');
  const { match, before } = await a2.until((m) => m.type === 'message' && m.text === 'after');
  assert.equal(match.seq, total + 1);
  assert.deepEqual(before.filter((m) => m.type === 'message'), []);
});
