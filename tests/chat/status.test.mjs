// Status and away (protocol 1.1 rules 68-70, 73, 75, 86): the status request, its reply and the
// copies to the user's other connections, presence to other users, joined/who `away` and
// `status_text`, welcome's `state` and `status_text`, the send bucket, and the fallback to online
// once the user has had no connection for the grace period. That grace is 75 s; one server here
// runs with PARLEY_TEST_STATUS_GRACE_MS (a test-only hook, logged as such at start) so that the
// fallback comes within moments, and the test waits for the hub's msg=status_expired log line,
// never for a clock.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { assertError, assertKeys, connect, guest, tab, uniq, uniqRoom, user } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

const isPresence = (room, who) => (m) => m.type === 'presence' && m.room === room && m.user === who;
const isStatus = (m) => m.type === 'status' && !Object.hasOwn(m, 'id');

test('welcome carries state online and an empty status_text for a new login (rule 68)', async (t) => {
  const g = await guest(server, t);
  assert.equal(g.welcome.state, 'online');
  assert.equal(g.welcome.status_text, '');
  const u = await user(server, t);
  assert.equal(u.welcome.state, 'online');
  assert.equal(u.welcome.status_text, '');
});

test('status: the reply echoes id, state and the trimmed text; text absent is "" (rule 69)', async (t) => {
  const a = await user(server, t);
  const r1 = await a.expect({ type: 'status', id: 'x1', state: 'away', text: 'lunch  \u3000' }, 'status');
  assert.deepEqual(r1, { type: 'status', id: 'x1', state: 'away', text: 'lunch' });
  const r2 = await a.expect({ type: 'status', id: 7, state: 'online' }, 'status');
  assert.deepEqual(r2, { type: 'status', id: 7, state: 'online', text: '' });
  const r3 = await a.expect({ type: 'status', id: 8, state: 'online', text: ' \t ' }, 'status');
  assert.deepEqual(r3, { type: 'status', id: 8, state: 'online', text: '' });
  // The status is the user's: a new connection's welcome has it.
  await a.expect({ type: 'status', state: 'away', text: 'in a meeting' }, 'status');
  const b = await tab(server, t, a);
  assert.equal(b.welcome.state, 'away');
  assert.equal(b.welcome.status_text, 'in a meeting');
});

test('status: field errors, in rule 75 order', async (t) => {
  const pre = await connect(server, t);
  // not_logged_in ranks before field validation.
  await pre.expectError({ type: 'status', state: 'bogus' }, 'not_logged_in');
  const a = await guest(server, t);
  await a.expectError({ type: 'status' }, 'bad_request');
  await a.expectError({ type: 'status', state: 'Away' }, 'bad_request');
  await a.expectError({ type: 'status', state: 'offline' }, 'bad_request');
  await a.expectError({ type: 'status', state: null }, 'bad_request');
  await a.expectError({ type: 'status', state: 1 }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: null }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: 5 }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: 'two\nlines' }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: 'a\ttab' }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: 'bell\u0007' }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: 'c1\u0085x' }, 'bad_request');
  // --max-status defaults to 100 code points: 100 two-byte characters pass, 101 do not.
  const hundred = 'é'.repeat(100);
  const ok = await a.expect({ type: 'status', state: 'away', text: hundred }, 'status');
  assert.equal(ok.text, hundred);
  await a.expectError({ type: 'status', state: 'away', text: 'é'.repeat(101) }, 'too_long');
  // Trailing white space does not count.
  await a.expect({ type: 'status', state: 'away', text: `${hundred}   ` }, 'status');
  // bad_request ranks before too_long.
  await a.expectError({ type: 'status', state: 'away', text: `${'x'.repeat(200)}\nx` }, 'bad_request');
  await a.expectError({ type: 'status', state: 'later', text: 'x'.repeat(200) }, 'bad_request');
  // A failed request changed nothing.
  const b = await tab(server, t, a);
  assert.equal(b.welcome.state, 'away');
  assert.equal(b.welcome.status_text, hundred);
});

test('--max-status sets the limit', async (t) => {
  const s = await startChatServer(['--rate-limit', '0', '--max-status', '3']);
  t.after(() => s.dispose());
  const a = await guest(s, t);
  await a.expect({ type: 'status', state: 'away', text: 'abc' }, 'status');
  await a.expectError({ type: 'status', state: 'away', text: 'abcd' }, 'too_long');
});

test('the user\'s other connections get the status without id; other users in its rooms get presence (rule 69)', async (t) => {
  const room = uniqRoom('st');
  const alice = await user(server, t);
  const alice2 = await tab(server, t, alice);
  const bob = await user(server, t);
  const carol = await guest(server, t); // in no room with alice
  await alice.join(room);
  await alice2.join(room);
  await bob.join(room);
  await alice.next(isPresence(room, bob.name), undefined, 'bob joining');
  await alice2.next(isPresence(room, bob.name), undefined, 'bob joining');

  const reply = await alice.expect({ type: 'status', state: 'away', text: 'lunch' }, 'status');
  assert.deepEqual(reply, { type: 'status', id: reply.id, state: 'away', text: 'lunch' });
  const copy = await alice2.next(isStatus, undefined, 'the status copy');
  assert.deepEqual(copy, { type: 'status', state: 'away', text: 'lunch' });
  const p = await bob.next(isPresence(room, alice.name), undefined, 'alice away');
  assert.deepEqual(p, { type: 'presence', room, user: alice.name, state: 'away', status_text: 'lunch' });

  // Online with a text: presence online carrying it; back without text: no status_text.
  await alice2.expect({ type: 'status', state: 'online', text: 'back at 2' }, 'status');
  assert.deepEqual(await alice.next(isStatus), { type: 'status', state: 'online', text: 'back at 2' });
  assert.deepEqual(await bob.next(isPresence(room, alice.name)), {
    type: 'presence', room, user: alice.name, state: 'online', status_text: 'back at 2',
  });
  await alice.expect({ type: 'status', state: 'online' }, 'status');
  assert.deepEqual(await alice2.next(isStatus), { type: 'status', state: 'online', text: '' });
  assert.deepEqual(await bob.next(isPresence(room, alice.name)), { type: 'presence', room, user: alice.name, state: 'online' });

  // The same status again: the other connection is told, nobody else (no presence).
  await alice.expect({ type: 'status', state: 'online', text: '' }, 'status');
  assert.deepEqual(await alice2.next(isStatus), { type: 'status', state: 'online', text: '' });
  const marker = await bob.say(room, 'marker');
  const { before: beforeMarker } = await bob.until((m) => m.type === 'message' && m.seq === marker.seq);
  assert.deepEqual(beforeMarker.filter((m) => m.type === 'presence'), [], 'no presence for an unchanged status');

  // Neither the requester nor the user's own connections got presence of the user; carol nothing.
  for (const c of [alice, alice2]) {
    await c.sync();
    assert.deepEqual(c.pending().filter(isPresence(room, alice.name)), [], `${c.label}: presence of itself`);
    assert.deepEqual(c.pending().filter((m) => m.type === 'status' && !Object.hasOwn(m, 'id')), [],
      `${c.label}: an unsolicited status of its own request`);
  }
  await carol.sync();
  assert.deepEqual(carol.pending().filter((m) => m.type === 'presence' || m.type === 'status'), []);
});

test('joined and members carry away and status_text, always, covering the users listed (rules 70, 84)', async (t) => {
  const room = uniqRoom('who');
  const a = await guest(server, t, uniq('a'));
  const joined0 = await a.join(room);
  assert.deepEqual(joined0.away, []);
  assert.deepEqual(joined0.status_text, {});
  const who0 = await a.expect({ type: 'who', room }, 'members');
  assertKeys(who0, ['type', 'id', 'room', 'members', 'away', 'status_text', 'member_count', 'more']);
  assert.deepEqual(who0.away, []);
  assert.deepEqual(who0.status_text, {});

  const b = await guest(server, t, uniq('b'));
  const c = await guest(server, t, uniq('c'));
  await b.expect({ type: 'status', state: 'away', text: 'gone fishing' }, 'status');
  await c.expect({ type: 'status', state: 'online', text: 'busy "quoted" \\ text' }, 'status');
  await b.join(room);
  await c.join(room);
  const joined = await a.join(room); // a rejoin answers joined again
  assert.deepEqual(joined.away, [b.name]);
  assert.deepEqual(joined.status_text, { [b.name]: 'gone fishing', [c.name]: 'busy "quoted" \\ text' });
  const who = await a.expect({ type: 'who', room }, 'members');
  assert.deepEqual(who.members, [a.name, b.name, c.name]);
  assert.deepEqual(who.away, [b.name]);
  assert.deepEqual(who.status_text, { [b.name]: 'gone fishing', [c.name]: 'busy "quoted" \\ text' });
  // A page covers only its users.
  const page1 = await a.expect({ type: 'who', room, limit: 1 }, 'members');
  assert.deepEqual(page1.members, [a.name]);
  assert.deepEqual(page1.away, []);
  assert.deepEqual(page1.status_text, {});
  const page2 = await a.expect({ type: 'who', room, after: a.name, limit: 1 }, 'members');
  assert.deepEqual(page2.members, [b.name]);
  assert.deepEqual(page2.away, [b.name]);
  assert.deepEqual(page2.status_text, { [b.name]: 'gone fishing' });
  // Members stays names only.
  assert.ok(who.members.every((n) => typeof n === 'string'));
});

test('a first join of an away user announces away with status_text; a later tab joining does not (rule 69)', async (t) => {
  const room = uniqRoom('fj');
  const watcher = await guest(server, t);
  await watcher.join(room);
  const a = await user(server, t);
  await a.expect({ type: 'status', state: 'away', text: 'brb' }, 'status');
  await a.join(room);
  assert.deepEqual(await watcher.next(isPresence(room, a.name)), {
    type: 'presence', room, user: a.name, state: 'away', status_text: 'brb',
  });
  const a2 = await tab(server, t, a);
  await a2.join(room);
  // A registered user's leave takes the room from its other tab too (rule 67).
  await a.leave(room);
  await a2.next((m) => m.type === 'left' && m.room === room);
  assert.deepEqual(await watcher.next(isPresence(room, a.name)), { type: 'presence', room, user: a.name, state: 'offline' });
  // Away without a text: no status_text.
  await a.expect({ type: 'status', state: 'away' }, 'status');
  await a.join(room);
  assert.deepEqual(await watcher.next(isPresence(room, a.name)), { type: 'presence', room, user: a.name, state: 'away' });
});

test('the status is kept through a reconnect within the grace (rule 69)', async (t) => {
  const a = await user(server, t);
  await a.expect({ type: 'status', state: 'away', text: 'commuting' }, 'status');
  const token = a.token;
  await a.close();
  const b = await connect(server, t);
  const w = await b.loginToken(token);
  assert.equal(w.state, 'away');
  assert.equal(w.status_text, 'commuting');
  // A guest's status is its session's.
  const g = await guest(server, t);
  await g.expect({ type: 'status', state: 'away', text: 'g' }, 'status');
  const g2 = await tab(server, t, g);
  assert.equal(g2.welcome.state, 'away');
  assert.equal(g2.welcome.status_text, 'g');
});

test('a guest that registers its own name keeps its status', async (t) => {
  const name = uniq('reg');
  const g = await guest(server, t, name);
  await g.expect({ type: 'status', state: 'away', text: 'signing up' }, 'status');
  await g.expect({ type: 'register', name, password: 'correct-horse-9' }, 'registered');
  const again = await connect(server, t);
  const w = await again.login(name, 'correct-horse-9');
  assert.equal(w.guest, false);
  assert.equal(w.state, 'away');
  assert.equal(w.status_text, 'signing up');
});

test('status takes a send-bucket token, even when it changes nothing; errors take none (rules 73, 75, 86)', async (t) => {
  // One token, refilled after 10 s: the test's premise is that it runs well within that.
  const s = await startChatServer(['--rate-limit', '1']);
  t.after(() => s.dispose());
  const a = await guest(s, t);
  const room = uniqRoom('rl');
  await a.join(room);
  // Errors first: they take no token.
  await a.expectError({ type: 'status', state: 'nope' }, 'bad_request');
  await a.expectError({ type: 'status', state: 'away', text: 'x'.repeat(101) }, 'too_long');
  // Online without text is the status already: no change, and still the one token.
  await a.expect({ type: 'status', state: 'online' }, 'status');
  await a.expectError({ type: 'send', room, text: 'none left' }, 'rate_limited');
  await a.expectError({ type: 'status', state: 'away' }, 'rate_limited');
  // With the bucket empty, a field error still ranks first.
  await a.expectError({ type: 'status', state: 'nope' }, 'bad_request');
  // The refused status changed nothing.
  const b = await tab(s, t, a);
  assert.equal(b.welcome.state, 'online');
});

test('in a large room a status change sends no presence; joined covers the listed users (rules 82, 83)', async (t) => {
  const s = await startChatServer(['--rate-limit', '0', '--presence-limit', '2'], { env: { PARLEY_TEST_TICK_MS: '50' } });
  t.after(() => s.dispose());
  const room = uniqRoom('big');
  const members = [];
  for (let i = 0; i < 3; i++) {
    const g = await guest(s, t, uniq(`m${i}`));
    await g.join(room);
    members.push(g);
  }
  for (const m of members) {
    await m.next((x) => x.type === 'count' && x.room === room && x.large === true, undefined, 'the room turning large');
  }
  const [a, b] = members;
  await a.expect({ type: 'status', state: 'away', text: 'quiet' }, 'status');
  const marker = await a.say(room, 'marker');
  const { before: seen } = await b.until((m) => m.type === 'message' && m.seq === marker.seq);
  // (Presence from before the room turned large may be there: none of a, which joined first.)
  assert.deepEqual(seen.filter(isPresence(room, a.name)), [], 'presence in a large room');
  const joined = await b.join(room);
  assert.ok(joined.members.includes(a.name));
  assert.deepEqual(joined.away, [a.name]);
  assert.deepEqual(joined.status_text, { [a.name]: 'quiet' });
});

test('without a connection for the grace period, the status falls back to online without text (rule 69)', async (t) => {
  const s = await startChatServer(['--rate-limit', '0'], { env: { PARLEY_TEST_STATUS_GRACE_MS: '300' } });
  t.after(() => s.dispose());
  await s.waitForLog((l) => l.fields.msg === 'test_hook' && 'PARLEY_TEST_STATUS_GRACE_MS' in l.fields, 5000, 'the test hook warning');
  const a = await user(s, t);
  const a2 = await tab(s, t, a);
  await a.expect({ type: 'status', state: 'away', text: 'on holiday' }, 'status');
  // One connection left: no fallback, however long.
  await a.close();
  await a2.sync();
  const a3 = await tab(s, t, a2);
  assert.equal(a3.welcome.state, 'away');
  await a2.close();
  await a3.close();
  await s.waitForLog((l) => l.fields.msg === 'status_expired' && l.fields.user === a.name, 10000, 'the status to expire');
  const back = await connect(s, t);
  const w = await back.login(a.name, a.password);
  assert.equal(w.state, 'online');
  assert.equal(w.status_text, '');
});

test('status requests count toward the send bucket\'s close, bad ones too (rule 73)', async (t) => {
  const s = await startChatServer(['--rate-limit', '2']);
  t.after(() => s.dispose());
  const a = await guest(s, t);
  // 20 attempts (10 x 2) are allowed in 10 s; mixed with sends, invalid ones count too.
  for (let i = 1; i <= 30; i++) {
    const id = `f${i}`;
    const req = i % 3 === 0 ? { type: 'status', id, state: 'bogus' }
      : i % 3 === 1 ? { type: 'status', id, state: 'away' }
        : { type: 'send', id, room: 'nowhere', text: 'x' };
    a.send(req).catch(() => {});
  }
  const close = await a.waitClosed(10000, 'close 1008 after 30 rapid attempts');
  assert.equal(close.code, 1008, JSON.stringify(close));
  // The server did not close early: every attempt up to the threshold (20) was answered, but for
  // valid statuses that took a token and were still on their way through the hub at the close
  // (the bucket's 2, and a token or so refilled meanwhile), whose answers the close may cut off.
  const answered = new Set(a.log.filter((m) => typeof m.id === 'string' && /^f\d+$/.test(m.id)).map((m) => Number(m.id.slice(1))));
  const unanswered = [];
  for (let i = 1; i <= 20; i++) if (!answered.has(i)) unanswered.push(i);
  assert.ok(unanswered.every((i) => i % 3 === 1) && unanswered.length <= 4, `unanswered before the close: ${unanswered}`);
});
