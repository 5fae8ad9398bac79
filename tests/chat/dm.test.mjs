// Direct messages: dm rooms, delivery to every connection, forbidden rooms, guests, welcome.dms.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import {
  PASSWORD,
  assertMessageShape,
  connect,
  dmRoom,
  eventually,
  guest,
  tab,
  uniq,
  user,
} from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

test('dm: ack room is dm:<a>:<b> (lower case, sorted); every connection of both users gets it, no join', async (t) => {
  const a = await user(server, t, uniq('Zed'));
  const b = await user(server, t, uniq('Amy'));
  const a2 = await tab(server, t, a);
  const b2 = await tab(server, t, b);
  const room = `dm:${[a.name.toLowerCase(), b.name.toLowerCase()].sort().join(':')}`;
  assert.equal(room, dmRoom(a.name, b.name));
  const ack = await a.request({ type: 'send', id: 8, to: b.name, text: 'hi' });
  assert.deepEqual(ack, { type: 'ack', id: 8, room, seq: 1 });
  for (const c of [a, a2, b, b2]) {
    assertMessageShape(await c.nextMessage(room), { room, from: a.name, text: 'hi', seq: 1 });
  }
  const reply = await b2.dm(a.name, 'hello back', { cid: 'dm-cid' });
  assert.equal(reply.room, room);
  assert.equal(reply.seq, 2);
  for (const c of [a, a2, b, b2]) {
    assertMessageShape(await c.nextMessage(room), { room, from: b.name, text: 'hello back', cid: 'dm-cid', seq: 2 });
  }
});

test('dm: to is case-insensitive', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t, uniq('Bob'));
  const ack = await a.dm(b.name.toUpperCase(), 'shouting name');
  assert.equal(ack.room, dmRoom(a.name, b.name));
  const m = await b.nextMessage(ack.room);
  assert.equal(m.from, a.name);
});

test('dm to oneself → bad_request, in any case (rule 18)', async (t) => {
  const a = await user(server, t, uniq('Self'));
  await a.expectError({ type: 'send', to: a.name, text: 'me' }, 'bad_request');
  await a.expectError({ type: 'send', to: a.name.toLowerCase(), text: 'me' }, 'bad_request');
});

test('dm to a name neither registered nor an online guest → no_such_user; invalid to → bad_name', async (t) => {
  const a = await user(server, t);
  await a.expectError({ type: 'send', to: uniq('ghost'), text: 'anyone?' }, 'no_such_user');
  for (const to of ['bad name', '', 'x'.repeat(33), 'dm:a:b', 'é']) {
    await a.expectError({ type: 'send', to, text: 'x' }, 'bad_name');
  }
  await a.expectError({ type: 'send', to: 5, text: 'x' }, 'bad_request');
});

test('dm to an online guest works; after the guest left → no_such_user', async (t) => {
  const a = await user(server, t);
  const g = await guest(server, t);
  const ack = await a.dm(g.name, 'hello guest');
  const m = await g.nextMessage(ack.room);
  assert.equal(m.text, 'hello guest');
  // Guests send dms too.
  const back = await g.dm(a.name, 'hello user');
  assert.equal(back.room, ack.room);
  assert.equal((await a.nextMessage(ack.room, (x) => x.text === 'hello user')).from, g.name);
  await g.close();
  await eventually(async () => {
    const r = await a.request({ type: 'send', to: g.name, text: 'gone?' });
    if (r.type === 'ack') return false;
    assert.equal(r.code, 'no_such_user', JSON.stringify(r));
    return true;
  }, undefined, 'dm to a departed guest to answer no_such_user');
});

test('a connection that joined its dm room still gets each dm once (rule 18)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = dmRoom(a.name, b.name);
  const j = await b.join(room);
  assert.equal(j.room, room);
  assert.equal(j.seq, 0);
  await a.dm(b.name, 'once');
  await a.dm(b.name, 'twice');
  const { match, before } = await b.until((m) => m.type === 'message' && m.text === 'twice');
  assert.equal(match.seq, 2);
  const msgs = before.filter((m) => m.type === 'message');
  assert.deepEqual(msgs.map((m) => m.seq), [1], `dm delivered more than once: ${JSON.stringify(msgs)}`);
  // A send into the joined dm room is also delivered once to each connection.
  await b.say(room, 'via room');
  const mine = await b.until((m) => m.type === 'message' && m.text === 'via room');
  assert.deepEqual(mine.before.filter((m) => m.type === 'message'), []);
  // The other party sending by room name, without a join, reaches the joined connection once.
  await a.say(room, 'from a via room');
  const theirs = await b.until((m) => m.type === 'message' && m.text === 'from a via room');
  assert.deepEqual(theirs.before.filter((m) => m.type === 'message'), []);
});

test('a participant may send with "room":"dm:a:b" without joining; the other gets it', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = dmRoom(a.name, b.name);
  const ack = await a.request({ type: 'send', id: 'r', room, text: 'by room name' });
  assert.deepEqual(ack, { type: 'ack', id: 'r', room, seq: 1 });
  const m = await b.nextMessage(room);
  assertMessageShape(m, { room, from: a.name, text: 'by room name', seq: 1 });
});

test('a non-participant: send into, join, who and history of a dm room → forbidden', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const c = await user(server, t);
  const room = dmRoom(a.name, b.name);
  await a.dm(b.name, 'secret');
  await c.expectError({ type: 'send', room, text: 'let me in' }, 'forbidden');
  await c.expectError({ type: 'join', room }, 'forbidden');
  await c.expectError({ type: 'join', room, since: 0 }, 'forbidden');
  await c.expectError({ type: 'who', room }, 'forbidden');
  await c.expectError({ type: 'history', room }, 'forbidden');
  const g = await guest(server, t);
  await g.expectError({ type: 'history', room }, 'forbidden');
  await g.expectError({ type: 'join', room }, 'forbidden');
});

test('dm rooms are named only in canonical form: other spellings → bad_name (rule 9)', async (t) => {
  const a = await user(server, t, uniq('Ann'));
  const b = await user(server, t, uniq('Ben'));
  const [x, y] = [a.name.toLowerCase(), b.name.toLowerCase()].sort();
  for (const room of [`dm:${y}:${x}`, `DM:${x}:${y}`, `dm:${x}`, `dm:${x}:${y}:z`, `dm:${x}:`, `dm::${y}`]) {
    await a.expectError({ type: 'join', room }, 'bad_name');
    await a.expectError({ type: 'history', room }, 'bad_name');
  }
  // Upper case in an otherwise sorted name is not canonical either.
  const upper = `dm:${x}:${y}`.replace(x, x.toUpperCase());
  await a.expectError({ type: 'join', room: upper }, 'bad_name');
  await a.expectError({ type: 'send', room: upper, text: 'x' }, 'bad_name');
});

test('welcome.dms lists every dm room of the user with its latest seq (rule 19)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const c = await user(server, t);
  await a.dm(b.name, 'one');
  await b.dm(a.name, 'two');
  await c.dm(a.name, 'three');
  const fresh = await connect(server, t);
  const w = await fresh.login(a.name, PASSWORD);
  const dms = [...w.dms].sort((p, q) => p.room.localeCompare(q.room));
  const expected = [
    // Protocol 1.1 rule 68: each with its read marker and counts (a's own 'one' is not unread).
    { room: dmRoom(a.name, b.name), seq: 2, read: 0, unread: 1, mentions: 0 },
    { room: dmRoom(a.name, c.name), seq: 1, read: 0, unread: 1, mentions: 0 },
  ].sort((p, q) => p.room.localeCompare(q.room));
  assert.deepEqual(dms, expected);
  const byToken = await connect(server, t);
  const w2 = await byToken.loginToken(a.token);
  assert.deepEqual([...w2.dms].sort((p, q) => p.room.localeCompare(q.room)), expected);
});

test('registered participants replay dm history; guests: live only, history and join with since → forbidden (rule 19)', async (t) => {
  const a = await user(server, t);
  const g = await guest(server, t);
  const room = dmRoom(a.name, g.name);
  await a.dm(g.name, 'to guest');
  await g.nextMessage(room);
  await g.dm(a.name, 'from guest');
  await g.nextMessage(room);
  await g.expectError({ type: 'history', room }, 'forbidden');
  await g.expectError({ type: 'join', room, since: 0 }, 'forbidden');
  const h = await a.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.from, m.text]), [[1, a.name, 'to guest'], [2, g.name, 'from guest']]);
  const a2 = await connect(server, t);
  await a2.loginToken(a.token);
  await a2.join(room, 0);
  const replay = await a2.messages(room, 2);
  assert.deepEqual(replay, h.messages);
  // The guest's welcome lists no dm history.
  const g2 = await connect(server, t);
  const w = await g2.loginToken(g.token);
  assert.deepEqual(w.dms, []);
});

test('a registered user cannot read what a former guest of its name said or received (rule 40)', async (t) => {
  const a = await user(server, t);
  const name = uniq('former');
  const g = await guest(server, t, name);
  const room = dmRoom(a.name, name);
  await a.dm(name, 'to the guest');
  await g.dm(a.name, 'guest reply');
  await g.nextMessage(room, (m) => m.text === 'guest reply');
  await g.close();
  const r = await connect(server, t);
  await eventually(async () => {
    const reply = await r.request({ type: 'register', name, password: PASSWORD });
    if (reply.type === 'registered') return true;
    assert.equal(reply.code, 'name_taken', JSON.stringify(reply));
    return false;
  }, undefined, `register of ${name} after its guest left`);
  const w = await r.login(name, PASSWORD);
  const listed = w.dms.find((d) => d.room === room);
  if (listed) assert.equal(listed.seq, 2, 'welcome.dms seq is the room latest');
  const h = await r.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages, [], 'the new account reads the former guest\'s dms');
  await r.join(room, 0);
  await a.dm(name, 'to the new account');
  const { match, before } = await r.until((m) => m.type === 'message' && m.room === room);
  assert.equal(match.text, 'to the new account');
  assert.equal(match.seq, 3);
  assert.deepEqual(before.filter((m) => m.type === 'message'), [], 'join since=0 replayed the guest era');
  const h2 = await r.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h2.messages.map((m) => m.text), ['to the new account']);
  // The other party keeps the whole history.
  const ha = await a.expect({ type: 'history', room }, 'history');
  assert.deepEqual(ha.messages.map((m) => m.text), ['to the guest', 'guest reply', 'to the new account']);
});

test('a participant may ask who of its dm room; rooms does not list it', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = dmRoom(a.name, b.name);
  await a.dm(b.name, 'x');
  assert.equal((await a.allRooms()).some((x) => x.name.startsWith('dm:')), false, 'rooms lists a dm room');
  const w = await a.expect({ type: 'who', room }, 'members');
  assert.equal(w.room, room);
  assert.ok(Array.isArray(w.members));
});

test('dm cid retry: acked with the first seq and not delivered again', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const first = await a.dm(b.name, 'once', { cid: 'dm-retry' });
  const again = await a.dm(b.name.toUpperCase(), 'once', { cid: 'dm-retry' });
  assert.equal(again.seq, first.seq);
  assert.equal(again.room, first.room);
  await a.dm(b.name, 'marker');
  const { before } = await b.until((m) => m.type === 'message' && m.text === 'marker');
  assert.deepEqual(before.filter((m) => m.type === 'message').map((m) => m.seq), [first.seq]);
});

test('a guest participant may join its dm room without since (live only)', async (t) => {
  const a = await user(server, t);
  const g = await guest(server, t);
  const room = dmRoom(a.name, g.name);
  await a.dm(g.name, 'first');
  await g.nextMessage(room);
  const j = await g.join(room);
  assert.equal(j.room, room);
  assert.equal(j.seq, 1);
  await a.dm(g.name, 'second');
  const { match, before } = await g.until((m) => m.type === 'message' && m.text === 'second');
  assert.equal(match.seq, 2);
  assert.deepEqual(before.filter((m) => m.type === 'message'), [], 'a guest got a replay or a duplicate');
});
