// Read markers, saved rooms and welcome counts (protocol 1.1 rules 66-68, 51's saved rooms, 75's
// join order): the read request and its errors, markers that never move back and survive leave
// and restarts, joins that save, leaves that forget and reach every tab, welcome.rooms and the
// dms' counts (own, deleted and mentioned messages, the 1000 cap), a guest that registers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTest, startChatServer } from './lib/server.mjs';
import { assertError, connect, dmRoom, guest, PASSWORD, tab, uniq, uniqRoom, user } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

const isLeft = (room) => (m) => m.type === 'left' && m.room === room && !Object.hasOwn(m, 'id');
const isRead = (room) => (m) => m.type === 'read' && m.room === room && !Object.hasOwn(m, 'id');
const isPresence = (m) => m.type === 'presence';

// Shows that nothing matching pred reached c before a ping's answer.
async function assertNothing(c, pred, what) {
  const { before: earlier } = await c.until((m) => m.type === 'pong');
  assert.deepEqual(earlier.filter(pred), [], what);
}

async function pingSync(c) {
  await c.send({ type: 'ping', id: uniq('p') });
}

// A fresh login of `u` on a new connection: its welcome.
async function welcomeOf(u, srv = server, t) {
  const c = await connect(srv, t);
  const w = await c.login(u.name, PASSWORD);
  c.terminate();
  return w;
}

// A room whose messages 1..n were sent by a fresh user.
async function roomWith(t, n) {
  const by = await user(server, t);
  const room = uniqRoom();
  await by.join(room);
  if (n) await by.sayMany(room, n, (k) => `m${k}`);
  return { by, room };
}

test('hello.features names read and saved_rooms, in the protocol order (rule 46)', async (t) => {
  const c = await connect(server, t);
  const order = ['edit', 'delete', 'react', 'reply', 'topic', 'moderation', 'read', 'search', 'status', 'saved_rooms', 'large_rooms'];
  for (const f of ['read', 'saved_rooms']) assert.ok(c.hello.features.includes(f), `features ${c.hello.features}`);
  const positions = c.hello.features.map((f) => order.indexOf(f));
  assert.ok(positions.every((p) => p >= 0), `unknown feature in ${c.hello.features}`);
  assert.deepEqual(positions, [...positions].sort((x, y) => x - y));
});

test('read: the reply echoes id, room and the marker; other connections get it without id; no token', async (t) => {
  const { room } = await roomWith(t, 5);
  const a = await user(server, t);
  const a2 = await tab(server, t, a);
  const a3 = await tab(server, t, a);
  const j = await a.join(room);
  assert.equal(j.read, 5, 'a join that saves the room sets the marker to its latest seq');
  assert.equal((await a2.join(room)).read, 5);
  await a.sayMany(room, 3, (k) => `n${k}`); // seqs 6..8
  assert.deepEqual(await a.request({ type: 'read', id: 22, room, seq: 7 }), { type: 'read', id: 22, room, seq: 7 });
  for (const c of [a2, a3]) assert.deepEqual(await c.next(isRead(room)), { type: 'read', room, seq: 7 });
  // Not moved (lower, or equal): the reply has the marker, nobody else is told.
  assert.deepEqual(await a.request({ type: 'read', id: 'x', room, seq: 3 }), { type: 'read', id: 'x', room, seq: 7 });
  assert.deepEqual(await a2.request({ type: 'read', id: 2, room, seq: 7 }), { type: 'read', id: 2, room, seq: 7 });
  await pingSync(a3);
  await assertNothing(a3, (m) => m.type === 'read', 'a read that did not move the marker was announced');
  // Above the latest reads as the latest. Every other connection of the user is told, a3 too,
  // which never joined the room.
  assert.deepEqual(await a2.request({ type: 'read', id: 1, room, seq: 2 ** 53 - 1 }), { type: 'read', id: 1, room, seq: 8 });
  for (const c of [a, a3]) assert.deepEqual(await c.next(isRead(room)), { type: 'read', room, seq: 8 });
  // The requester never gets the unsolicited one.
  await pingSync(a2);
  await assertNothing(a2, (m) => m.type === 'read', 'the requester got its own read without id');
});

test('read takes no token (rule 73)', async (t) => {
  const srv = await serverForTest(t, ['--rate-limit', '1']);
  const a = await user(srv, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'one'); // the only token
  await a.expectError({ type: 'send', room, text: 'two' }, 'rate_limited');
  for (let i = 0; i < 10; i++) assert.equal((await a.expect({ type: 'read', room, seq: 1 }, 'read')).seq, 1);
});

test('read errors: field validation, then guests forbidden before not_member, then membership (rules 49, 66, 75)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const g = await guest(server, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'hello');
  for (const seq of ["1", -1, 1.5, true, null, 2 ** 53]) {
    await a.expectError({ type: 'read', room, seq }, 'bad_request');
  }
  await a.expectError({ type: 'read', room }, 'bad_request');
  await a.expectError({ type: 'read', seq: 1 }, 'bad_request');
  await a.expectError({ type: 'read', room: 'No Such!', seq: 1 }, 'bad_name');
  await a.expectError({ type: 'read', room: 'dm:zed:alpha', seq: 1 }, 'bad_name'); // not canonical
  await g.expectError({ type: 'read', room: 'No Such!', seq: 1 }, 'bad_name'); // validation first
  await g.expectError({ type: 'read', room, seq: 1 }, 'forbidden'); // before not_member
  await g.join(room);
  await g.expectError({ type: 'read', room, seq: 1 }, 'forbidden');
  await b.expectError({ type: 'read', room, seq: 1 }, 'not_member');
  const other = dmRoom(a.name, g.name);
  await b.expectError({ type: 'read', room: other, seq: 1 }, 'forbidden');
  const c = await connect(server, t);
  await c.expectError({ type: 'read', room, seq: 1 }, 'not_logged_in');
});

test('read in the own dm room needs no join; dm counts in welcome follow the marker (rules 66, 68)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = dmRoom(a.name, b.name);
  await a.dm(b.name, 'one');
  await b.dm(a.name, `two @${a.name}`);
  await b.dm(a.name, 'three');
  let w = await welcomeOf(a, server, t);
  assert.deepEqual(w.dms, [{ room, seq: 3, read: 0, unread: 2, mentions: 1 }]);
  assert.deepEqual(await a.request({ type: 'read', id: 1, room, seq: 2 }), { type: 'read', id: 1, room, seq: 2 });
  w = await welcomeOf(a, server, t);
  assert.deepEqual(w.dms, [{ room, seq: 3, read: 2, unread: 1, mentions: 0 }]);
  w = await welcomeOf(b, server, t);
  assert.deepEqual(w.dms, [{ room, seq: 3, read: 0, unread: 1, mentions: 0 }], 'b counts only a\'s message');
});

test('a former guest\'s dms stay out of the account\'s counts (rules 40, 68)', async (t) => {
  const a = await user(server, t);
  const name = uniq('fg');
  const g = await guest(server, t, name);
  await a.dm(name, 'to the guest');
  g.terminate();
  await g.closed;
  const c = await connect(server, t);
  await c.register(name);
  await a.dm(name, 'to the account');
  const w = await c.login(name, PASSWORD);
  const room = dmRoom(a.name, name);
  assert.deepEqual(w.dms, [{ room, seq: 2, read: 0, unread: 1, mentions: 0 }]);
});

test('welcome.rooms: saved rooms by name with seq, read, unread and mentions; [] for guests (rule 68)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const base = uniqRoom('w');
  const r1 = `${base}-b`;
  const r2 = `${base}-a`;
  await a.join(r1);
  await a.join(r2);
  await b.join(r1);
  await b.say(r1, 'before');
  assert.equal((await a.expect({ type: 'read', room: r1, seq: 1 }, 'read')).seq, 1);
  await b.say(r1, `hi @${a.name}`); // 2: unread, mentions a
  await a.say(r1, `me @${a.name}`); // 3: a's own: neither
  await b.say(r1, `bye @${a.name.toUpperCase()}`); // 4: unread, mentions a
  await b.say(r1, 'plain'); // 5: unread
  await b.say(r1, 'gone'); // 6: deleted: neither
  await b.expect({ type: 'delete', room: r1, seq: 6 }, 'ack'); // 7
  await b.expect({ type: 'edit', room: r1, seq: 5, text: `now @${a.name}` }, 'ack'); // 8: mentions now
  await b.expect({ type: 'edit', room: r1, seq: 4, text: 'no longer' }, 'ack'); // 9: mentions no more
  const w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms, [
    { name: r2, seq: 0, read: 0, unread: 0, mentions: 0 },
    { name: r1, seq: 9, read: 1, unread: 3, mentions: 2 },
  ]);
  const wb = await welcomeOf(b, server, t);
  assert.deepEqual(wb.rooms, [{ name: r1, seq: 9, read: 0, unread: 1, mentions: 0 }]);
  const g = await connect(server, t);
  assert.deepEqual((await g.login(uniq('g'))).rooms, []);
});

test('unread and mentions stop at 1000 (rule 68)', async (t) => {
  const a = await user(server, t);
  const { by, room } = await roomWith(t, 0);
  await a.join(room);
  await by.sayMany(room, 1001, (k) => `@${a.name} ${k}`);
  let w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms, [{ name: room, seq: 1001, read: 0, unread: 1000, mentions: 1000 }]);
  await a.expect({ type: 'read', room, seq: 2 }, 'read');
  w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms, [{ name: room, seq: 1001, read: 2, unread: 999, mentions: 999 }]);
});

test('a join saves the room and sets the marker only if none exists; the marker survives leave (rules 66, 67)', async (t) => {
  const { by, room } = await roomWith(t, 3);
  const a = await user(server, t);
  assert.equal((await a.join(room)).read, 3);
  await by.sayMany(room, 3, (k) => `x${k}`); // 4..6
  assert.equal((await a.join(room)).read, 3, 'a second join keeps the marker');
  await a.expect({ type: 'read', room, seq: 5 }, 'read');
  await a.leave(room);
  let w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms, [], 'leave forgets the saved room');
  assert.equal((await a.join(room)).read, 5, 'the marker outlived the leave');
  w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms, [{ name: room, seq: 6, read: 5, unread: 1, mentions: 0 }]);
  // A guest's joined has no read, and a dm room's joined has the marker.
  const g = await guest(server, t);
  assert.equal(Object.hasOwn(await g.join(room), 'read'), false);
  const dm = dmRoom(a.name, by.name);
  await by.dm(a.name, 'psst');
  assert.equal((await a.join(dm)).read, 0);
  await a.expect({ type: 'read', room: dm, seq: 1 }, 'read');
  assert.equal((await a.join(dm)).read, 1);
  w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms.map((r) => r.name), [room], 'a dm room is never a saved room');
});

test('a registered leave reaches every tab that joined: left without id, presence as for a leave (rule 67)', async (t) => {
  const watcher = await user(server, t);
  const a = await user(server, t);
  const a2 = await tab(server, t, a);
  const a3 = await tab(server, t, a);
  const room = uniqRoom();
  await watcher.join(room);
  await a.join(room);
  await a2.join(room);
  assert.deepEqual(await watcher.next(isPresence), { type: 'presence', room, user: a.name, state: 'online' });
  assert.deepEqual(await a.request({ type: 'leave', id: 4, room }), { type: 'left', id: 4, room });
  assert.deepEqual(await a2.next(isLeft(room)), { type: 'left', room });
  assert.deepEqual(await watcher.next(isPresence), { type: 'presence', room, user: a.name, state: 'offline' });
  await a2.expectError({ type: 'send', room, text: 'still here?' }, 'not_member');
  // a3 never joined it: told nothing; the leaver gets only its reply.
  for (const c of [a, a3]) {
    await pingSync(c);
    await assertNothing(c, (m) => m.type === 'left', 'a left reached a connection that should not get one');
  }
  const w = await watcher.request({ type: 'who', id: 1, room });
  assert.deepEqual(w.members, [watcher.name]);
});

test('leave of a saved room this connection did not join forgets it; otherwise not_member (rules 10, 67)', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  const first = await connect(server, t);
  await first.login(a.name, PASSWORD);
  await first.join(room);
  first.terminate(); // a disconnect is no leave
  await first.closed;
  let w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms.map((r) => r.name), [room]);
  assert.deepEqual(await a.request({ type: 'leave', id: 'l', room }), { type: 'left', id: 'l', room });
  w = await welcomeOf(a, server, t);
  assert.deepEqual(w.rooms, []);
  await a.expectError({ type: 'leave', room }, 'not_member');
  await a.expectError({ type: 'leave', room: uniqRoom() }, 'not_member');
  await a.expectError({ type: 'leave', room: dmRoom(a.name, 'zz') }, 'not_member');
});

test('a guest\'s leave stays its connection\'s (rule 67)', async (t) => {
  const g = await guest(server, t);
  const g2 = await tab(server, t, g);
  const owner = await user(server, t);
  const room = uniqRoom();
  await owner.join(room);
  await g.join(room);
  await g2.join(room);
  await g.leave(room);
  await owner.say(room, 'still there');
  assert.equal((await g2.nextMessage(room)).text, 'still there');
  await pingSync(g2);
  await assertNothing(g2, (m) => m.type === 'left', 'a guest\'s leave reached its other tab');
});

test('join beyond the per-connection limit counted over saved rooms → too_many_rooms (rules 67, 75)', async (t) => {
  const srv = await serverForTest(t, ['--max-rooms', '2']);
  const a = await user(srv, t);
  const [r1, r2, r3] = [uniqRoom(), uniqRoom(), uniqRoom()];
  await a.join(r1);
  await a.join(r2);
  await a.expectError({ type: 'join', room: r3 }, 'too_many_rooms'); // per connection
  const other = await tab(srv, t, a);
  await other.expectError({ type: 'join', room: r3 }, 'too_many_rooms'); // saved rooms
  // Rule 75's join order: field validation and another pair's dm room come first.
  await other.expectError({ type: 'join', room: 'Bad Room' }, 'bad_name');
  await other.expectError({ type: 'join', room: dmRoom('xa', 'xb') }, 'forbidden');

  assert.equal((await other.join(r1)).room, r1, 'joining a saved room adds nothing');
  await other.leave(r2); // also takes r2 from a
  assert.deepEqual(await a.next(isLeft(r2)), { type: 'left', room: r2 });
  assert.equal((await other.join(r3)).room, r3);
  const w = await welcomeOf(a, srv, t);
  assert.deepEqual(w.rooms.map((r) => r.name), [r1, r3].sort());
  // The own dm room is never a saved room: the saved-room limit does not apply to it.
  const third = await tab(srv, t, a);
  assert.equal((await third.join(dmRoom(a.name, 'xb'))).read, 0);
  // A guest has no saved rooms to count.
  const g = await guest(srv, t);
  await g.join(r1);
  await g.join(r3);
});

test('markers and saved rooms survive a restart', async (t) => {
  const srv = await serverForTest(t, ['--rate-limit', '0']);
  const a = await user(srv, t);
  const b = await user(srv, t);
  const room = uniqRoom();
  await b.join(room);
  await b.sayMany(room, 4, (k) => `k${k}`);
  await a.join(room);
  await b.say(room, 'five');
  await a.expect({ type: 'read', room, seq: 5 }, 'read');
  await b.say(room, 'six');
  await srv.kill();
  const again = await srv.restartInTest(['--rate-limit', '0']);
  const w = await welcomeOf(a, again, t);
  assert.deepEqual(w.rooms, [{ name: room, seq: 6, read: 5, unread: 1, mentions: 0 }]);
  const c = await connect(again, t);
  await c.login(a.name, PASSWORD);
  assert.equal((await c.join(room)).read, 5);
});

test('a guest that registers its own name: the rooms its connections joined become saved, marked read (rule 51)', async (t) => {
  const name = uniq('tk');
  const { by, room: r1 } = await roomWith(t, 2);
  const r2 = uniqRoom();
  await by.join(r2);
  await by.say(r2, 'x');
  const g = await guest(server, t, name);
  const g2 = await tab(server, t, g);
  await g.join(r1);
  await g2.join(r2);
  await g2.join(dmRoom(name, by.name));
  await by.say(r1, 'three');
  await g.register(name);
  const w = await welcomeOf({ name }, server, t);
  assert.deepEqual(w.rooms, [
    { name: r1, seq: 3, read: 3, unread: 0, mentions: 0 },
    { name: r2, seq: 1, read: 1, unread: 0, mentions: 0 },
  ].sort((p, q) => (p.name < q.name ? -1 : 1)));
  // Now registered: read works on the old connections.
  assert.equal((await g.expect({ type: 'read', room: r1, seq: 3 }, 'read')).seq, 3);
});
