// Limits: --max-rooms, --max-text, the send rate limit and its 1008 close, the login deadline,
// --max-conns-per-ip, slow consumers (--output-limit), token lifetimes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTest } from './lib/server.mjs';
import {
  LONG_TIMEOUT,
  PASSWORD,
  assertError,
  assertSeqRun,
  connect,
  eventually,
  guest,
  ms,
  uniqRoom,
  user,
  withTimeout,
} from './lib/chat.mjs';
import { RawChat } from './lib/rawchat.mjs';
import { TelnetClient, telnetLogin } from './lib/telnet.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import { exchange } from '../blackbox/lib/http.mjs';
import { OP, parseClose, upgradeRequest } from '../blackbox/lib/rawws.mjs';


test('--max-rooms 3: a 4th join → too_many_rooms; re-joining a joined room is fine; leave frees a slot', async (t) => {
  const server = await serverForTest(t, ['--max-rooms', '3']);
  const u = await user(server, t);
  const rooms = [uniqRoom(), uniqRoom(), uniqRoom(), uniqRoom()];
  for (const room of rooms.slice(0, 3)) await u.join(room);
  const err = await u.expectError({ type: 'join', room: rooms[3] }, 'too_many_rooms');
  assert.ok(err);
  await u.expectError({ type: 'join', room: 'general', since: 0 }, 'too_many_rooms');
  const again = await u.join(rooms[0]);
  assert.equal(again.room, rooms[0]);
  await u.leave(rooms[1]);
  await u.join(rooms[3]);
  // The limit is per connection, and (protocol 1.1 rule 67) a registered user's saved rooms are
  // held to it too: another tab may join the saved rooms, but no room beyond them.
  const u2 = await connect(server, t);
  await u2.loginToken(u.token);
  for (const room of [rooms[0], rooms[3]]) await u2.join(room);
  await u2.expectError({ type: 'join', room: rooms[1] }, 'too_many_rooms');
  // Field validation outranks too_many_rooms (rule 5/38).
  await u.expectError({ type: 'join', room: 'Bad Room' }, 'bad_name');
  await u.expectError({ type: 'join', room: uniqRoom(), since: -1 }, 'bad_request');
});

test('--max-text 10: 10 code points accepted, 11 → too_long, counted after trimming', async (t) => {
  const server = await serverForTest(t, ['--max-text', '10']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.say(room, '0123456789');
  await u.say(room, '😀'.repeat(10));
  await u.say(room, '0123456789   \n\t');
  await u.expectError({ type: 'send', room, text: '01234567890' }, 'too_long');
  await u.expectError({ type: 'send', room, text: '😀'.repeat(11) }, 'too_long');
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => m.text), ['0123456789', '😀'.repeat(10), '0123456789']);
});

// Sends n requests without waiting and resolves with their replies in id order.
async function burst(client, reqs) {
  const pending = reqs.map((r) => client.request(r));
  return Promise.all(pending);
}

test('--rate-limit 5: 5 rapid sends are acked, the 6th → rate_limited (rule 42)', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '5']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const replies = await burst(u, Array.from({ length: 6 }, (_, i) => ({ type: 'send', id: `s${i}`, room, text: `m${i}` })));
  assert.deepEqual(replies.slice(0, 5).map((r) => r.type), ['ack', 'ack', 'ack', 'ack', 'ack']);
  assertError(replies[5], 'rate_limited', 's5');
  // The rejected send was not stored.
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => m.text), ['m0', 'm1', 'm2', 'm3', 'm4']);
  assert.ok(u.isOpen);
});

test('--rate-limit 5: direct messages share the bucket; the limit is per connection', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '5']);
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const replies = await burst(a, [
    { type: 'send', room, text: '1' },
    { type: 'send', to: b.name, text: '2' },
    { type: 'send', room, text: '3' },
    { type: 'send', to: b.name, text: '4' },
    { type: 'send', room, text: '5' },
    { type: 'send', to: b.name, text: '6' },
  ]);
  assert.deepEqual(replies.map((r) => r.type === 'error' ? r.code : r.type), ['ack', 'ack', 'ack', 'ack', 'ack', 'rate_limited']);
  // Another connection of the same user has its own bucket.
  const a2 = await connect(server, t);
  await a2.loginToken(a.token);
  await a2.join(room);
  await a2.say(room, 'own bucket');
});

test('rule 17/23: cid retries are not counted by the rate limit', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '5']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const firsts = await burst(u, [1, 2, 3, 4].map((i) => ({ type: 'send', room, text: `c${i}`, cid: `cid-${i}` })));
  assert.deepEqual(firsts.map((r) => r.type), ['ack', 'ack', 'ack', 'ack']);
  // Five retries: each acked with its first seq, none counted.
  const retries = await burst(u, [1, 2, 3, 4, 1].map((i) => ({ type: 'send', room, text: `c${i}`, cid: `cid-${i}` })));
  assert.deepEqual(retries.map((r) => (r.type === 'ack' ? r.seq : r.code)), [1, 2, 3, 4, 1]);
  // One token is left: one new message, then rate_limited.
  const last = await burst(u, [{ type: 'send', room, text: 'fifth' }, { type: 'send', room, text: 'sixth' }]);
  assert.equal(last[0].type, 'ack', JSON.stringify(last[0]));
  assert.equal(last[0].seq, 5);
  assertError(last[1], 'rate_limited', last[1].id);
});

test('rule 17: pipelined retries of one cid are not counted while the first copy is still on its way', async (t) => {
  const server = await serverForTest(t); // the default bucket: 20
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  // 30 copies of one cid, then 19 new sends, all written before any answer comes back.
  const retries = Array.from({ length: 30 }, () => ({ type: 'send', room, text: 'once', cid: 'piped' }));
  const fresh = Array.from({ length: 19 }, (_, i) => ({ type: 'send', room, text: `new ${i}`, cid: `new-${i}` }));
  const replies = await burst(u, [...retries, ...fresh]);
  assert.deepEqual(replies.slice(0, 30).map((r) => (r.type === 'ack' ? r.seq : r.code)), Array(30).fill(1));
  // One token went to the first copy: the 19 new sends take the other 19.
  assert.deepEqual(replies.slice(30).map((r) => (r.type === 'ack' ? r.seq : r.code)),
    Array.from({ length: 19 }, (_, i) => i + 2));
  // The bucket is empty now: a new cid is refused, a retry of an acked one is still free.
  await u.expectError({ type: 'send', room, text: 'one more', cid: 'new-19' }, 'rate_limited');
  assert.equal((await u.request({ type: 'send', room, text: 'again', cid: 'new-3' })).seq, 5);
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.equal(h.messages.length, 20);
});

test('rule 5: with an empty bucket, validation and membership errors still outrank rate_limited', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '2']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await burst(u, [{ type: 'send', room, text: 'a' }, { type: 'send', room, text: 'b' }]);
  await u.expectError({ type: 'send', room, text: 'c' }, 'rate_limited');
  await u.expectError({ type: 'send', room: uniqRoom(), text: 'x' }, 'not_member');
  await u.expectError({ type: 'send', room, text: '' }, 'bad_request');
  await u.expectError({ type: 'send', room, text: 'x'.repeat(4001) }, 'too_long');
  await u.expectError({ type: 'send', room: 'Bad Room', text: 'x' }, 'bad_name');
  await u.expectError({ type: 'send', to: 'nobody-here-x', text: 'x' }, 'no_such_user');
  // Typing is not limited by the send bucket.
  const v = await user(server, t);
  await v.join(room);
  await u.send({ type: 'typing', room });
  await v.next((m) => m.type === 'typing', undefined, 'typing while the send bucket is empty');
});

test('default limit: 20 rapid sends acked, the 21st → rate_limited', async (t) => {
  const server = await serverForTest(t, []);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const replies = await burst(u, Array.from({ length: 21 }, (_, i) => ({ type: 'send', room, text: `m${i}` })));
  assert.equal(replies.filter((r) => r.type === 'ack').length, 20, JSON.stringify(replies.map((r) => r.type)));
  assertError(replies[20], 'rate_limited', replies[20].id);
});

// Sends `count` sends as fast as possible and awaits the server's close. Resolves
// {replies: Map id-number → reply, close}.
async function hammer(u, room, count) {
  for (let i = 1; i <= count; i++) {
    u.send({ type: 'send', id: `h${i}`, room, text: `spam ${i}` }).catch(() => {});
  }
  const close = await u.waitClosed(ms(15000), `close 1008 after ${count} rapid sends`);
  const replies = new Map(
    u.log
      .filter((m) => (m.type === 'ack' || m.type === 'error') && /^h\d+$/.test(m.id))
      .map((m) => [Number(m.id.slice(1)), m]),
  );
  return { replies, close };
}

// Checks a hammer() result for a bucket of `bucket` tokens: close 1008; every error is
// rate_limited; about `bucket` messages stored, each acked one among them; and the server did not
// close early: the attempts after the bucket up to 10 x bucket were answered (rate_limited errors
// are answered at once). A send accepted with a token but unacked when the connection closed may
// be lost (only an ack promises durability), and the bucket refills a little while the burst runs,
// so up to REFILL_SLACK of those attempts may be unanswered.
const REFILL_SLACK = 3;
async function checkHammer(server, t, owner, room, bucket, { replies, close }) {
  assert.equal(close.code, 1008, `closed with ${JSON.stringify(close)}`);
  for (const r of replies.values()) if (r.type === 'error') assert.equal(r.code, 'rate_limited', JSON.stringify(r));
  const c = await connect(server, t);
  await c.loginToken(owner.token);
  const h = await c.expect({ type: 'history', room, limit: 200 }, 'history');
  const stored = new Set(h.messages.map((m) => Number(m.text.replace('spam ', ''))));
  const unanswered = [];
  for (let i = bucket + 1; i <= 10 * bucket; i++) if (!replies.has(i) && !stored.has(i)) unanswered.push(i);
  assert.ok(unanswered.length <= REFILL_SLACK, `attempts within 10x the rate got no reply before the close: ${unanswered}`);
  assert.ok(stored.size <= bucket + REFILL_SLACK, `${stored.size} messages stored for a bucket of ${bucket}`);
  for (const [i, r] of replies) if (r.type === 'ack') assert.ok(stored.has(i), `acked send ${i} is not stored`);
}

test('--rate-limit 5: more than 50 send attempts in 10 s → close 1008 (rules 23, 42)', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '5']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await checkHammer(server, t, u, room, 5, await hammer(u, room, 70));
});

test('--rate-limit 5: 50 attempts in a burst do not close the connection', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '5']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const replies = await burst(u, Array.from({ length: 50 }, (_, i) => ({ type: 'send', room, text: `m${i}` })));
  assert.equal(replies.length, 50);
  await u.sync();
  assert.ok(u.isOpen, 'closed at 50 attempts');
});

test('default: more than 200 send attempts in 10 s → close 1008 (rule 23)', async (t) => {
  const server = await serverForTest(t, []);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await checkHammer(server, t, u, room, 20, await hammer(u, room, 230));
});

test('--rate-limit 0 switches the limit off: 300 rapid sends are all acked', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '0']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const replies = await burst(u, Array.from({ length: 300 }, (_, i) => ({ type: 'send', room, text: `m${i}` })));
  assert.deepEqual([...new Set(replies.map((r) => r.type))], ['ack']);
  assert.deepEqual(replies.map((r) => r.seq).sort((x, y) => x - y), Array.from({ length: 300 }, (_, i) => i + 1));
  await u.sync();
  assert.ok(u.isOpen);
});

test('--login-timeout 1: a client that never logs in is closed with 1008; failed attempts do not extend it', async (t) => {
  const server = await serverForTest(t, ['--login-timeout', '1']);
  const idle = await connect(server, t);
  const trying = await connect(server, t);
  const ok = await connect(server, t);
  await ok.login('in-time');
  const started = Date.now();
  // Failed login attempts while the deadline runs (rule 26).
  let stop = false;
  const attempts = (async () => {
    while (!stop && trying.isOpen) {
      await trying.request({ type: 'login', name: 'in-time' }).catch(() => {});
      await trying.request({ type: 'login', token: 'bogus' }).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const closedIdle = await idle.waitClosed(ms(6000), 'the login deadline close');
  assert.equal(closedIdle.code, 1008, JSON.stringify(closedIdle));
  const closedTrying = await trying.waitClosed(ms(6000), 'the login deadline close despite failed attempts');
  stop = true;
  await attempts;
  assert.equal(closedTrying.code, 1008, JSON.stringify(closedTrying));
  assert.ok(Date.now() - started < ms(6000));
  // The logged-in connection is not affected.
  await ok.sync();
  assert.ok(ok.isOpen);
});

test('--max-conns-per-ip 2: a third WebSocket upgrade → HTTP 503', async (t) => {
  const server = await serverForTest(t, ['--max-conns-per-ip', '2']);
  await connect(server, t);
  await connect(server, t);
  const [res] = await exchange(server.httpPort, upgradeRequest({ port: server.httpPort, path: '/ws' }));
  assert.equal(res.status, 503, `third upgrade answered ${res.status}`);
});

test('--max-conns-per-ip 2: a third telnet connection → "! server_busy: ..." and close', async (t) => {
  const server = await serverForTest(t, ['--max-conns-per-ip', '2']);
  const t1 = await TelnetClient.connect(server, 't1');
  const t2 = await TelnetClient.connect(server, 't2');
  t.after(() => {
    t1.destroy();
    t2.destroy();
  });
  await t1.waitPrompt();
  await t2.waitPrompt();
  const t3 = await TelnetClient.connect(server, 't3');
  t.after(() => t3.destroy());
  await t3.nextLine(/^! server_busy: \S/, undefined, 'the server_busy line');
  await t3.waitClosed();
  t3.assertCrlf();
});

// Floods `room` from two clients until parley_slow_consumers_total rises above `before`, i.e. until
// a member that stopped reading was closed. Each flooder keeps few sends in flight, so their own
// output queues (they get every message back) stay far below the limit. Returns a flooder and the
// latest acked seq.
// onOverflow runs as soon as the close is seen, before the flood winds down: the closing
// connection gets 5 s without progress to take what it was sent, so the paused reader must
// start reading then, not after the flooders' last batches.
async function floodUntilSlowConsumer(server, t, room, before, onOverflow) {
  const flooders = [];
  for (let i = 0; i < 2; i++) {
    const f = await user(server, t);
    // A flooder reads the flood too: it sends its next messages only once it has read its own
    // last one, so what is on its way to it stays a few messages (far below --output-limit)
    // however fast the server stores, and only the paused reader can fall behind.
    f.seen = 0;
    f.waits = [];
    f.ignore = (m) => {
      if (m.type !== 'message') return false;
      f.seen = Math.max(f.seen, m.seq);
      f.waits = f.waits.filter((w) => (w.seq <= f.seen ? (w.resolve(), false) : true));
      return true;
    };
    f.caughtUp = (seq) =>
      f.seen >= seq
        ? Promise.resolve()
        : Promise.race([
            new Promise((resolve) => f.waits.push({ seq, resolve })),
            f.closed.then((info) => {
              throw new Error(`flooder ${f.name} closed (${JSON.stringify(info)}) before it read seq ${seq}`);
            }),
          ]);
    await f.join(room);
    flooders.push(f);
  }
  const text = 'x'.repeat(1500);
  let sent = 0;
  let latest = 0;
  let overflowed = false;
  const maxMessages = 30000; // ~45 MB: far more than loopback socket buffers hold
  const flood = async (f) => {
    while (!overflowed && sent < maxMessages) {
      const batch = [];
      for (let i = 0; i < 3; i++) batch.push(f.say(room, `${text} ${++sent}`));
      try {
        let mine = 0;
        for (const ack of await Promise.all(batch)) mine = Math.max(mine, ack.seq);
        latest = Math.max(latest, mine);
        await f.caughtUp(mine);
      } catch (err) {
        // Why the server closed it, for the report: the close frame may still be on its way.
        const info = f.closeInfo ?? (await withTimeout(f.closed, ms(2000), 'the flooder\'s close').catch(() => null));
        throw new Error(`flooder ${f.name} failed (closed: ${JSON.stringify(info)}): ${err.message.slice(0, 300)}`);
      }
    }
  };
  const watch = async () => {
    while (!overflowed && sent < maxMessages) {
      if (sum(await scrape(server), 'parley_slow_consumers_total') > before) {
        overflowed = true;
        onOverflow();
      } else {
        await new Promise((resolve) => setTimeout(resolve, 25)); // polling interval
      }
    }
  };
  await Promise.all([...flooders.map(flood), watch()]);
  assert.ok(overflowed, `no slow-consumer close after ${sent} messages`);
  return { flooder: flooders[0], latest };
}

test('slow consumer: --output-limit 65536 closes a client that stops reading with 1008 "slow consumer"; it resumes with no gap or duplicate', async (t) => {
  const server = await serverForTest(t, ['--output-limit', '65536', '--rate-limit', '0']);
  const room = uniqRoom();
  const before = sum(await scrape(server), 'parley_slow_consumers_total');

  const slow = await RawChat.open(server);
  t.after(() => slow.destroy());
  const name = `slow${Date.now() % 1000000}`;
  const reg = await slow.request({ type: 'register', name, password: PASSWORD });
  assert.equal(reg.type, 'registered', JSON.stringify(reg));
  const welcome = await slow.request({ type: 'login', name, password: PASSWORD });
  assert.equal(welcome.type, 'welcome', JSON.stringify(welcome));
  const joined = await slow.request({ type: 'join', room });
  assert.equal(joined.type, 'joined', JSON.stringify(joined));

  slow.pause();
  const { flooder, latest } = await floodUntilSlowConsumer(server, t, room, before, () => slow.resume());

  const { messages, close, end } = await slow.drainToClose(LONG_TIMEOUT);
  assert.ok(close, `the server ended the TCP connection without a close frame (${end}) after ${messages.length} messages`);
  assert.equal(close.code, 1008);
  assert.equal(close.reason, 'slow consumer');
  const seen = messages.filter((m) => m.type === 'message').map((m) => m.seq);
  assert.ok(seen.length < latest, `the slow client received all ${latest} messages: no overflow`);
  assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i + 1), 'messages before the close are not 1..k in order');

  // Resume as PROTOCOL.md says: log in with the token, re-join with since = the last seq seen,
  // and again after any further disconnect. Every message must arrive exactly once, in order.
  const got = [...seen];
  let reconnects = 0;
  let back;
  while (got.length < latest) {
    assert.ok(reconnects < 100, `still missing messages after ${reconnects} reconnects`);
    reconnects += 1;
    back = await connect(server, t);
    await back.loginToken(welcome.token);
    const rejoined = await back.join(room, got.length);
    assert.equal(rejoined.seq, latest);
    try {
      while (got.length < latest) got.push((await back.nextMessage(room)).seq);
    } catch (err) {
      if (!back.closeInfo) throw err;
      assert.equal(back.closeInfo.code, 1008, JSON.stringify(back.closeInfo));
    }
  }
  assert.deepEqual(got, Array.from({ length: latest }, (_, i) => i + 1), 'gap or duplicate across the resume');
  await flooder.say(room, 'after resume');
  const next = await back.nextMessage(room);
  assert.equal(next.seq, latest + 1, 'a duplicate or gap after the replay');
  assert.equal(next.text, 'after resume');

  const after = sum(await scrape(server), 'parley_slow_consumers_total');
  assert.equal(after - before, reconnects, 'parley_slow_consumers_total does not count the slow-consumer closes');
});

test('slow consumer on telnet: what was queued is sent in order, then a "* " notice, then the close', async (t) => {
  const server = await serverForTest(t, ['--output-limit', '65536', '--rate-limit', '0']);
  const before = sum(await scrape(server), 'parley_slow_consumers_total');
  const slow = await telnetLogin(server, t, `slowtn${Date.now() % 100000}`);
  slow.socket.pause();
  const { flooder, latest } = await floodUntilSlowConsumer(server, t, 'general', before, () => slow.socket.resume());
  await withTimeout(slow.closed, LONG_TIMEOUT, 'the server to close the slow telnet session');
  const texts = slow.lines.map((l) => l.text);
  const got = texts.filter((x) => x.startsWith('[#general] '));
  assert.ok(got.length > 0 && got.length < latest, `got ${got.length} of ${latest} message lines`);
  // Telnet lines carry no seq: they must be the room's first messages, in stored order.
  // The whole room, paged back to seq 1: the flood went on for a while after the overflow.
  const stored = [];
  for (let before = latest + 1; before > 1;) {
    const h = await flooder.expect({ type: 'history', room: 'general', before, limit: 200 }, 'history');
    assert.ok(h.messages.length > 0, `history before ${before} is empty`);
    stored.unshift(...h.messages);
    before = h.messages[0].seq;
  }
  assert.equal(stored.length, latest, 'the stored history has gaps');
  const want = stored.slice(0, got.length).map((m) => `[#general] ${m.from}: ${m.text}`);
  assert.deepEqual(got, want, 'the lines before the close are not the first messages of the room, in order');
  assert.match(texts[texts.length - 1], /^\* You fell too far behind/);
  assert.ok(slow.lines.every((l) => l.crlf), 'a line without CR LF');
});

test('--retention: a paged replay that retention overtakes ends in 1008 "slow consumer" after a gap-free run, and the resume says truncated', async (t) => {
  const keep = 3000;
  const server = await serverForTest(t, ['--ring-size', '16', '--retention', String(keep), '--rate-limit', '0',
    '--output-limit', String(64 << 20)]);
  const room = uniqRoom();
  const before = sum(await scrape(server), 'parley_slow_consumers_total');
  const writer = await user(server, t);
  writer.ignore = (m) => m.type === 'message';
  await writer.join(room);
  const text = 'z'.repeat(3900);
  await writer.sayMany(room, keep, (k) => `${k} ${text}`); // 12 MB: more than loopback buffers hold

  const slow = await RawChat.open(server);
  t.after(() => slow.destroy());
  assert.equal((await slow.request({ type: 'login', name: `behind${Date.now() % 100000}` })).type, 'welcome');
  slow.send({ type: 'join', id: 'j', room, since: 0 });
  // The second batch starts only once the join is answered: a message stored before the join
  // reached the store would already have pushed seq 1 out of retention (truncated: true).
  const joined = await slow.nextJson((m) => m.id === 'j', LONG_TIMEOUT, 'joined');
  slow.pause(); // in the same turn: its replay stops at what the socket buffers take
  await writer.sayMany(room, keep, (k) => `${keep + k} ${text}`); // retention keeps only these now
  const sent = 2 * keep;
  slow.resume();

  // Until the close, or until the newest message: a server that skipped the lost part would send it.
  const messages = [];
  let close = null;
  const deadline = Date.now() + LONG_TIMEOUT;
  while (!close && messages.at(-1)?.seq !== sent) {
    const frame = await slow.ws.nextFrame(Math.max(0, deadline - Date.now()), 'the replay, up to a close');
    if (frame.opcode === OP.CLOSE) close = parseClose(frame.payload);
    else if (frame.opcode === OP.TEXT) messages.push(JSON.parse(frame.payload.toString('utf8')));
  }
  assert.equal(joined.type, 'joined', JSON.stringify(joined));
  assert.equal(joined.truncated, false);
  const seen = messages.filter((m) => m.type === 'message').map((m) => m.seq);
  const gap = seen.findIndex((seq, i) => seq !== i + 1);
  assert.equal(gap, -1, `a gap in the replay: seq ${seen[gap]} came after ${seen[gap - 1]}`);
  assert.ok(seen.length < keep, `all ${seen.length} of the replay arrived: retention never overtook it`);
  assert.deepEqual(close, { code: 1008, reason: 'slow consumer' });
  assert.equal(sum(await scrape(server), 'parley_slow_consumers_total') - before, 1);

  // Resuming from the last seq it saw, it is told that messages were lost to retention.
  const back = await guest(server, t);
  const again = await back.join(room, seen.length);
  assert.equal(again.truncated, true);
  assert.equal(again.seq, 2 * keep);
});

// Polls token logins on fresh connections until one answers bad_token.
async function waitTokenExpired(server, t, token, what) {
  let last;
  await eventually(async () => {
    const p = await connect(server, t);
    last = await p.request({ type: 'login', token });
    p.terminate();
    if (last.type === 'welcome') return false;
    assertError(last, 'bad_token', last.id, what);
    return true;
  }, ms(6000), what);
}

test('a client that reads promptly is not closed as a slow consumer by the replay of its join (rule 24, resume)', async (t) => {
  const server = await serverForTest(t, ['--output-limit', '65536', '--rate-limit', '0']);
  const room = uniqRoom();
  const writer = await user(server, t);
  writer.ignore = (m) => m.type === 'message';
  await writer.join(room);
  const text = 'y'.repeat(2000);
  for (let i = 0; i < 100; i += 4) {
    await Promise.all([0, 1, 2, 3].map((k) => writer.say(room, `${text} ${i + k}`)));
  }
  // 100 messages of ~2 KB: about 200 KB of replay for a client that reads as fast as it can.
  const reader = await user(server, t);
  const j = await reader.join(room, 0);
  assert.equal(j.seq, 100);
  const replay = await reader.messages(room, 100, LONG_TIMEOUT);
  assertSeqRun(replay, room, 1, 100, 'replay to a prompt reader');
  assert.ok(reader.isOpen);
});

test('--token-ttl 1: a token logs in at once and → bad_token once expired', async (t) => {
  const server = await serverForTest(t, ['--token-ttl', '1']);
  const u = await user(server, t);
  const c = await connect(server, t);
  await c.loginToken(u.token);
  await waitTokenExpired(server, t, u.token, 'the token to expire');
  // Password login still works and gives a fresh token.
  const again = await connect(server, t);
  const w = await again.login(u.name, PASSWORD);
  assert.notEqual(w.token, u.token);
});

test('--guest-token-ttl 1: a guest token → bad_token once expired', async (t) => {
  const server = await serverForTest(t, ['--guest-token-ttl', '1']);
  const g = await guest(server, t);
  const c = await connect(server, t);
  await c.loginToken(g.token);
  await waitTokenExpired(server, t, g.token, 'the guest token to expire');
});

// A send request padded (with an unknown field, which is ignored) to exactly `size` bytes.
function paddedSend(room, size) {
  const base = { type: 'send', id: 'big', room, text: 'padded', pad: '' };
  const pad = size - Buffer.byteLength(JSON.stringify(base));
  return JSON.stringify({ ...base, pad: 'p'.repeat(pad) });
}

test('on /ws a 65536-byte request is served; 65537 bytes → close 1009 (rule 25)', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '0']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const exact = paddedSend(room, 65536);
  assert.equal(Buffer.byteLength(exact), 65536);
  await u.sendText(exact);
  const ack = await u.next((m) => m.id === 'big', undefined, 'the ack of the 65536-byte send');
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  const over = paddedSend(room, 65537);
  assert.equal(Buffer.byteLength(over), 65537);
  await u.sendText(over).catch(() => {});
  const closed = await u.waitClosed(undefined, 'close 1009 after 65537 bytes');
  assert.equal(closed.code, 1009);
});

test('the send bucket refills: --rate-limit 10 gives a new token within about a second', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '10']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const replies = await burst(u, Array.from({ length: 11 }, (_, i) => ({ type: 'send', room, text: `b${i}` })));
  assert.equal(replies.filter((r) => r.type === 'ack').length, 10);
  const started = Date.now();
  let attempts = 0;
  await eventually(async () => {
    attempts += 1;
    const r = await u.request({ type: 'send', room, text: `refill ${attempts}` });
    if (r.type === 'ack') return true;
    assertError(r, 'rate_limited', r.id);
    return false;
  }, ms(4000), 'a refilled token');
  const waited = Date.now() - started;
  assert.ok(waited >= 500, `a token came back after ${waited} ms; 10 per 10 s is one per second`);
  assert.ok(u.isOpen);
});

test('--rate-limit 5: a send bucket given back once full and quiet is made again full, and limits as before', async (t) => {
  const server = await serverForTest(t, ['--rate-limit', '5']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  const sends = (tag) => Array.from({ length: 6 }, (_, i) => ({ type: 'send', id: `${tag}${i}`, room, text: `${tag}${i}` }));
  const first = await burst(u, sends('a'));
  assert.deepEqual(first.map((r) => r.type), ['ack', 'ack', 'ack', 'ack', 'ack', 'error']);
  // The bucket is full again 10 s after the burst, its attempts' window empty 10 s after them,
  // and the worker looks every second: then it goes (idle clients hold none), and the next send
  // makes a new one, full.
  const buckets = async () => sum(await scrape(server), 'parley_send_buckets');
  assert.equal(await buckets(), 1, 'the sender holds a send bucket');
  await eventually(async () => (await buckets()) === 0, ms(15000), 'the send bucket to be given back');
  const second = await burst(u, sends('b'));
  assert.deepEqual(second.map((r) => r.type), ['ack', 'ack', 'ack', 'ack', 'ack', 'error']);
  assertError(second[5], 'rate_limited', 'b5');
  assert.ok(u.isOpen);
});
