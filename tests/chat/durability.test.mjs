// Durability: acked messages survive kill -9; accounts and tokens survive restarts; unacked cid
// retries are never duplicated; retention and replay from SQLite (--ring-size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTest, sqliteOnly } from './lib/server.mjs';
import { RawChat } from './lib/rawchat.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import {
  LONG_TIMEOUT,
  PASSWORD,
  assertSeqRun,
  connect,
  dmRoom,
  guest,
  ms,
  uniqRoom,
  user,
  withTimeout,
} from './lib/chat.mjs';

// Every message of room that client may read, oldest first, read back page by page.
async function wholeHistory(client, room) {
  const stored = [];
  let before;
  for (;;) {
    const req = { type: 'history', room, limit: 200 };
    if (before !== undefined) req.before = before;
    const h = await client.expect(req, 'history');
    if (h.messages.length === 0) break;
    stored.unshift(...h.messages);
    before = h.messages[0].seq;
    if (before === 1) break;
  }
  return stored;
}


test('kill -9: every acked message is replayed once, in order, with the same seq, text, cid, ts and from', async (t) => {
  const args = ['--rate-limit', '0'];
  const server = await serverForTest(t, args);
  const alice = await user(server, t);
  const bob = await user(server, t);
  const room = uniqRoom();
  await alice.join(room);
  await bob.join(room);
  const acks = [];
  for (let i = 1; i <= 30; i++) {
    const extra = i % 3 === 0 ? { cid: `dur-${i}` } : {};
    acks.push(await alice.say(room, `durable ${i}\nline two`, extra));
  }
  assert.deepEqual(acks.map((a) => a.seq), Array.from({ length: 30 }, (_, i) => i + 1));
  const seen = await bob.messages(room, 30);
  const dmAck = await alice.dm(bob.name, 'dm before the crash');
  await bob.nextMessage(dmAck.room);

  await server.kill();
  const again = await server.restartInTest(args);

  const a2 = await connect(again, t);
  const w = await a2.loginToken(alice.token);
  assert.equal(w.name, alice.name);
  assert.equal(w.guest, false);
  assert.deepEqual(w.dms, [{ room: dmRoom(alice.name, bob.name), seq: 1, read: 0, unread: 0, mentions: 0 }]);
  const b2 = await connect(again, t);
  await b2.login(bob.name, PASSWORD);

  const j = await b2.join(room, 0);
  assert.equal(j.seq, 30);
  assert.equal(j.truncated, false);
  const replay = await b2.messages(room, 30);
  assert.deepEqual(replay, seen, 'replay after kill -9 differs from what was delivered before');
  const h = await b2.expect({ type: 'history', room, limit: 200 }, 'history');
  assert.deepEqual(h.messages, seen);
  const dmh = await b2.expect({ type: 'history', room: dmAck.room }, 'history');
  assert.deepEqual(dmh.messages.map((m) => m.text), ['dm before the crash']);
  // The sequence continues without a gap.
  await a2.join(room);
  const next = await a2.say(room, 'after restart');
  assert.equal(next.seq, 31);
  const m = await b2.nextMessage(room);
  assert.equal(m.seq, 31);
  // Nothing more than the 30 came in the replay.
  assert.equal(b2.pending().filter((x) => x.type === 'message').length, 0);
});

test('accounts, names and tokens survive a restart; an unknown token is still bad_token', async (t) => {
  const server = await serverForTest(t, []);
  const u = await user(server, t, 'Durable_Name');
  const g = await guest(server, t);
  const guestToken = g.token;
  const guestName = g.name;
  await server.kill();
  const again = await server.restartInTest([]);
  const c1 = await connect(again, t);
  const w1 = await c1.loginToken(u.token);
  assert.equal(w1.name, 'Durable_Name');
  const c2 = await connect(again, t);
  const w2 = await c2.login('durable_name', PASSWORD);
  assert.equal(w2.name, 'Durable_Name', 'registered spelling lost in the restart');
  const c3 = await connect(again, t);
  await c3.expectError({ type: 'register', name: 'DURABLE_NAME', password: PASSWORD }, 'name_taken');
  await c3.expectError({ type: 'login', name: 'Durable_Name', password: 'wrong-password' }, 'bad_credentials');
  await c3.expectError({ type: 'login', token: 'nope' }, 'bad_token');
  const c4 = await connect(again, t);
  const w4 = await c4.loginToken(guestToken);
  assert.equal(w4.name, guestName);
  assert.equal(w4.guest, true);
});

test('sends cut by kill -9 and retried with their cid after the restart: each stored exactly once', async (t) => {
  const args = ['--rate-limit', '0'];
  const server = await serverForTest(t, args);
  const alice = await user(server, t);
  const witness = await user(server, t);
  const room = uniqRoom();
  await alice.join(room);
  await witness.join(room);
  const total = 300;
  const acked = new Map(); // cid -> seq
  const cidOf = (i) => `retry-${i}`;
  let resolveEnough;
  const enough = new Promise((resolve) => {
    resolveEnough = resolve;
  });
  const pending = [];
  for (let i = 1; i <= total; i++) {
    const cid = cidOf(i);
    pending.push(
      alice
        .request({ type: 'send', room, text: `text ${i}`, cid }, { timeoutMs: LONG_TIMEOUT })
        .then((r) => {
          if (r.type === 'ack') acked.set(cid, r.seq);
          if (acked.size >= 20) resolveEnough();
        })
        .catch(() => {}),
    );
  }
  await withTimeout(enough, LONG_TIMEOUT, '20 acks before the kill');
  await server.kill();
  await Promise.all(pending);
  const witnessed = witness.log.filter((m) => m.type === 'message' && m.room === room);

  const again = await server.restartInTest(args);
  const a2 = await connect(again, t);
  await a2.loginToken(alice.token);
  await a2.join(room);
  for (let i = 1; i <= total; i++) {
    const cid = cidOf(i);
    const ack = await a2.say(room, `text ${i}`, { cid });
    if (acked.has(cid)) assert.equal(ack.seq, acked.get(cid), `${cid} acked with ${acked.get(cid)} before the kill, ${ack.seq} after`);
  }
  const stored = await wholeHistory(a2, room);
  const seqs = stored.map((m) => m.seq);
  const cids = stored.map((m) => m.cid);
  assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i + 1), 'seqs are not 1..N without gaps');
  assert.equal(new Set(cids).size, total, 'a cid is stored twice');
  assert.deepEqual([...cids].sort(), Array.from({ length: total }, (_, i) => cidOf(i + 1)).sort());
  // What the witness saw before the crash is what is stored (no message was taken back).
  const bySeq = new Map(stored.map((m) => [m.seq, m]));
  for (const m of witnessed) assert.deepEqual(bySeq.get(m.seq), m, `message ${m.seq} seen before the crash differs after it`);
  assert.ok(acked.size >= 20);
});

// The WAL is copied back into the database by a thread of its own while the store commits
// (wal_checkpointer.c): a kill -9 among those checkpoints must take no acknowledged message with it.
for (const sync of ['normal', 'full']) {
  test(`kill -9 among the WAL checkpointer's checkpoints (--sync ${sync}): every acked message is there after the restart`, { skip: sqliteOnly }, async (t) => {
    const args = ['--rate-limit', '0', '--sync', sync];
    const server = await serverForTest(t, args);
    const alice = await user(server, t);
    const room = uniqRoom();
    await alice.join(room);
    const acked = new Map(); // seq -> text
    let n = 0;
    let target = Infinity; // acks of the last wave to wait for before the kill
    let reached;
    const enough = new Promise((resolve) => {
      reached = resolve;
    });
    const wave = (size) =>
      Array.from({ length: size }, () => {
        const text = `checkpointed ${++n} ${'words to index '.repeat(4).trim()}`;
        return alice
          .request({ type: 'send', room, text }, { timeoutMs: LONG_TIMEOUT })
          .then((r) => {
            if (r.type === 'ack') acked.set(r.seq, text);
            if (acked.size >= target) reached();
          })
          .catch(() => {});
      });
    // Until the checkpointer has run twice: the WAL passed 1,000 frames at least twice.
    let checkpoints = 0;
    for (let waves = 0; checkpoints < 2; waves++) {
      assert.ok(waves < 100, `the checkpointer ran ${checkpoints} times in ${n} sends`);
      await Promise.all(wave(100));
      checkpoints = sum(await scrape(server), 'parley_store_checkpoints_total');
    }
    assert.equal(acked.size, n, 'every send before the kill was acked');
    // A last wave in flight when the server dies, while the WAL is being checkpointed again.
    const before = acked.size;
    target = before + 50;
    const last = wave(300);
    await withTimeout(enough, LONG_TIMEOUT, '50 acks of the last wave');
    await server.kill();
    await Promise.all(last);

    const again = await server.restartInTest(args);
    const a2 = await connect(again, t);
    await a2.loginToken(alice.token);
    await a2.join(room);
    const stored = await wholeHistory(a2, room);
    assert.deepEqual(stored.map((m) => m.seq), Array.from({ length: stored.length }, (_, i) => i + 1), 'seqs are not 1..N without gaps');
    const bySeq = new Map(stored.map((m) => [m.seq, m.text]));
    for (const [seq, text] of acked) assert.equal(bySeq.get(seq), text, `acked message ${seq} lost or changed by the kill`);
    assert.ok(acked.size >= before + 50);
  });
}

test('--retention 5: since=0 → truncated:true and the last 5; since=6 → truncated:false', async (t) => {
  const args = ['--retention', '5', '--rate-limit', '0'];
  const server = await serverForTest(t, args);
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  for (let i = 1; i <= 10; i++) await a.say(room, `r${i}`);
  const b = await user(server, t);
  const j0 = await b.join(room, 0);
  assert.equal(j0.truncated, true);
  const r0 = await b.messages(room, 5);
  assertSeqRun(r0, room, 6, 10, 'replay since=0');
  assert.deepEqual(r0.map((m) => m.text), ['r6', 'r7', 'r8', 'r9', 'r10']);
  const b6 = await user(server, t);
  const j6 = await b6.join(room, 6);
  assert.equal(j6.truncated, false);
  assertSeqRun(await b6.messages(room, 4), room, 7, 10, 'replay since=6');
  const b5 = await user(server, t);
  const j5 = await b5.join(room, 5);
  assert.equal(j5.truncated, false, 'since=5: every message after 5 is kept');
  assertSeqRun(await b5.messages(room, 5), room, 6, 10, 'replay since=5');
  const b4 = await user(server, t);
  const j4 = await b4.join(room, 4);
  assert.equal(j4.truncated, true, 'since=4: message 5 is gone');
  assertSeqRun(await b4.messages(room, 5), room, 6, 10, 'replay since=4');
});

test('--retention 5: history holds only the newest 5, also after a restart', async (t) => {
  const args = ['--retention', '5', '--rate-limit', '0'];
  const server = await serverForTest(t, args);
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  for (let i = 1; i <= 10; i++) await a.say(room, `r${i}`);
  let h = await a.expect({ type: 'history', room }, 'history');
  assertSeqRun(h.messages, room, 6, 10, 'history with retention 5');
  await server.kill();
  const again = await server.restartInTest(args);
  const b = await user(again, t);
  h = await b.expect({ type: 'history', room }, 'history');
  assertSeqRun(h.messages, room, 6, 10, 'history with retention 5 after restart');
  const j = await b.join(room, 0);
  assert.equal(j.seq, 10);
  assert.equal(j.truncated, true);
  assertSeqRun(await b.messages(room, 5), room, 6, 10, 'replay after restart');
});

test('--ring-size 4: join since=2 replays 3..20 once, in order (older ones from SQLite), also after a restart', async (t) => {
  const args = ['--ring-size', '4', '--rate-limit', '0'];
  const server = await serverForTest(t, args);
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  for (let i = 1; i <= 20; i++) await a.say(room, `ring ${i}`, i % 2 ? { cid: `ring-${i}` } : {});
  const live = await a.messages(room, 20);
  const b = await user(server, t);
  const j = await b.join(room, 2);
  assert.equal(j.seq, 20);
  const replay = await b.messages(room, 18);
  assert.deepEqual(replay, live.slice(2));
  await a.say(room, 'live 21');
  const m = await b.nextMessage(room);
  assert.equal(m.seq, 21, 'duplicate or gap after a replay that spans SQLite and the ring');
  const h = await b.expect({ type: 'history', room, before: 10, limit: 5 }, 'history');
  assert.deepEqual(h.messages, live.slice(4, 9));

  await server.kill();
  const again = await server.restartInTest(args);
  const c = await connect(again, t);
  await c.loginToken(b.token);
  const j2 = await c.join(room, 2);
  assert.equal(j2.seq, 21);
  const replay2 = await c.messages(room, 19);
  assert.deepEqual(replay2.slice(0, 18), live.slice(2));
  assert.equal(replay2[18].seq, 21);
  await c.sync();
  assert.equal(c.pending().filter((x) => x.type === 'message').length, 0, 'extra messages after the replay');
});

test('--ring-size 16: a replay of 700 from SQLite comes page by page, once each and in order, then what was sent meanwhile', async (t) => {
  const server = await serverForTest(t, ['--ring-size', '16', '--rate-limit', '0']);
  const a = await user(server, t);
  a.ignore = (m) => m.type === 'message';
  const room = uniqRoom();
  await a.join(room);
  await a.sayMany(room, 700, (k) => `m${k}`);

  // A reader that stops reading right after its join: 10 more are sent while its replay waits.
  const slow = await RawChat.open(server);
  t.after(() => slow.destroy());
  assert.equal((await slow.request({ type: 'login', name: `pager${Date.now() % 100000}` })).type, 'welcome');
  const joined = await slow.request({ type: 'join', room, since: 0 });
  assert.equal(joined.type, 'joined', JSON.stringify(joined));
  assert.equal(joined.seq, 700);
  assert.equal(joined.truncated, false);
  slow.pause();
  await a.sayMany(room, 10, (k) => `m${700 + k}`);
  slow.resume();
  const got = [];
  while (got.length < 710) {
    const m = await slow.nextJson((x) => x.type === 'message', LONG_TIMEOUT, `message ${got.length + 1} of 710`);
    assert.equal(m.text, `m${m.seq}`);
    got.push(m.seq);
  }
  assert.deepEqual(got, Array.from({ length: 710 }, (_, i) => i + 1), 'gap, duplicate or disorder in the replay');
  await a.say(room, 'm711');
  assert.equal((await slow.nextJson((x) => x.type === 'message')).seq, 711, 'a message after the replay');

  // Joining again with since (a rejoin) replays from SQLite too, and only from since.
  const b = await user(server, t);
  await b.join(room);
  const again = await b.join(room, 600);
  assert.equal(again.seq, 711);
  assertSeqRun(await b.messages(room, 111, LONG_TIMEOUT), room, 601, 711, 'the rejoin replay');
});

test('SIGTERM: clients get close 1001, and everything is there after the restart', async (t) => {
  const args = ['--rate-limit', '0'];
  const server = await serverForTest(t, args);
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  for (let i = 1; i <= 5; i++) await a.say(room, `t${i}`);
  const closed = a.waitClosed(ms(10000), 'the shutdown close');
  await server.stop();
  const info = await closed;
  assert.equal(info.code, 1001);
  const again = await server.restartInTest(args);
  const b = await connect(again, t);
  await b.loginToken(a.token);
  await b.join(room, 0);
  assertSeqRun(await b.messages(room, 5), room, 1, 5, 'replay after SIGTERM');
});
