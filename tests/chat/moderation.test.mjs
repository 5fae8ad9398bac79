// Moderation (protocol 1.1 rules 61-65, 73-75): kick, ban, unban, mute, unmute as timeline
// events; kicked delivery to each of the user's connections in the room, then the event, then
// presence offline; banned on join and history; muted on send, edit, react, topic, typing
// dropped; joined.muted_until; rights across owner, op, member, admin, guest; field validation
// and limits; expiry; restarts; replay.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertKeys, dmRoom, eventually, guest, tab, uniq, uniqRoom, user } from './lib/chat.mjs';
import { serverForTest } from './lib/server.mjs';
import { adminClient, assertNothingBefore, nextEvent, staffedRoom, startAdminServer } from './lib/mod.mjs';

let server;

before(async () => {
  server = await startAdminServer(['--rate-limit', '0', '--max-reason', '10', '--max-duration', '7200']);
});

after(() => server?.dispose());

const kickedOf = (c, room) => c.next((m) => m.type === 'kicked' && m.room === room, undefined, `kicked from ${room}`);

test('kick: ack; each of the user\'s connections in the room gets kicked and leaves it; the room gets the event, then presence offline', async (t) => {
  const { owner, op, member, room } = await staffedRoom(server, t);
  const m2 = await tab(server, t, member);
  await m2.join(room);
  const m3 = await tab(server, t, member); // not in the room: told nothing (rule 86)
  const ack = await op.request({ type: 'kick', id: 18, room, user: member.name.toUpperCase(), reason: 'spam  ' });
  assert.deepEqual(ack, { type: 'ack', id: 18, room, seq: ack.seq });
  for (const c of [member, m2]) {
    const k = await kickedOf(c, room);
    assert.deepEqual(k, { type: 'kicked', room, by: op.name, reason: 'spam' });
  }
  for (const c of [owner, op]) {
    const { before: earlier } = await c.until((m) => m.type === 'presence' && m.room === room && m.user === member.name && m.state === 'offline');
    const ev = earlier.find((m) => m.type === 'kick');
    assert.ok(ev, `the kick event came before the presence: ${JSON.stringify(earlier)}`);
    assertKeys(ev, ['type', 'room', 'seq', 'ts', 'from', 'user', 'reason'], 'kick event');
    assert.deepEqual({ seq: ev.seq, from: ev.from, user: ev.user, reason: ev.reason }, { seq: ack.seq, from: op.name, user: member.name, reason: 'spam' });
  }
  // The kicked connections are out of the room; they get no event, and may rejoin at once.
  await member.expectError({ type: 'send', room, text: 'still here?' }, 'not_member');
  await owner.say(room, 'after the kick');
  await m2.sync();
  assert.ok(!m2.pending().some((m) => m.type === 'kick' || (m.room === room && m.type === 'message')), JSON.stringify(m2.pending()));
  assert.ok(!m3.pending().some((m) => m.room === room), `m3 was told: ${JSON.stringify(m3.pending())}`);
  const j = await member.join(room);
  assert.ok(j.members.includes(member.name));
});

test('a kick of someone absent, or a guest, is an event too; the guest gets kicked without reason', async (t) => {
  const { owner, op, guest: g, room } = await staffedRoom(server, t);
  const absent = await owner.expect({ type: 'kick', room, user: uniq('absent') }, 'ack');
  const ev = await nextEvent(op, room, 'kick', (m) => m.seq === absent.seq);
  assert.ok(!('reason' in ev));
  await op.expect({ type: 'kick', room, user: g.name, reason: '   ' }, 'ack');
  assert.deepEqual(await kickedOf(g, room), { type: 'kicked', room, by: op.name });
  const kick = await nextEvent(owner, room, 'kick', (m) => m.user === g.name);
  assert.ok(!('reason' in kick), 'an empty reason is none');
});

test('ban with a duration: kicked with banned and duration; join and history banned; unban lifts it', async (t) => {
  const { owner, op, member, room } = await staffedRoom(server, t);
  const ack = await owner.expect({ type: 'ban', room, user: member.name, duration: 3600, reason: 'flood' }, 'ack');
  assert.deepEqual(await kickedOf(member, room), { type: 'kicked', room, by: owner.name, reason: 'flood', banned: true, duration: 3600 });
  const ev = await nextEvent(op, room, 'ban');
  assertKeys(ev, ['type', 'room', 'seq', 'ts', 'from', 'user', 'reason', 'duration'], 'ban event');
  assert.equal(ev.seq, ack.seq);
  const err = await member.expectError({ type: 'join', id: 3, room }, 'banned');
  assert.equal(err.message, `banned from #${room}`);
  await member.expectError({ type: 'history', room }, 'banned');
  await member.expectError({ type: 'join', room, since: 0 }, 'banned');
  // Another tab too: bans go by name.
  const other = await tab(server, t, member);
  await other.expectError({ type: 'join', room }, 'banned');
  const unban = await op.expect({ type: 'unban', room, user: member.name }, 'ack');
  const uev = await nextEvent(owner, room, 'unban');
  assertKeys(uev, ['type', 'room', 'seq', 'ts', 'from', 'user'], 'unban event');
  assert.equal(uev.seq, unban.seq);
  await member.join(room);
  assert.ok((await member.expect({ type: 'history', room }, 'history')).messages);
  // Unbanning the unbanned still stores an event (rule 62).
  assert.equal((await op.expect({ type: 'unban', room, user: member.name }, 'ack')).seq, unban.seq + 1);
});

test('a ban without duration holds until unban; a new ban replaces the old; a short ban expires by the store\'s clock', async (t) => {
  const { owner, member, guest: g, room } = await staffedRoom(server, t);
  await owner.expect({ type: 'ban', room, user: g.name }, 'ack');
  assert.deepEqual(await kickedOf(g, room), { type: 'kicked', room, by: owner.name, banned: true });
  const ev = await nextEvent(member, room, 'ban');
  assert.ok(!('duration' in ev) && !('reason' in ev), JSON.stringify(ev));
  await g.expectError({ type: 'join', room }, 'banned');
  await owner.expect({ type: 'ban', room, user: g.name, duration: 1 }, 'ack');
  await g.expectError({ type: 'join', room }, 'banned');
  // Expiry stores no event: after a second the guest joins again (polled: time must pass).
  await eventually(async () => (await g.request({ type: 'join', room })).type === 'joined', 10000, 'the ban to expire');
});

test('mute: send, edit, react, topic answered muted; typing dropped; joined.muted_until; unmute lifts it', async (t) => {
  const { owner, op, member, guest: g, room } = await staffedRoom(server, t);
  const mine = await member.say(room, 'before the mute');
  const ack = await owner.expect({ type: 'mute', room, user: member.name, duration: 600 }, 'ack');
  const ev = await nextEvent(op, room, 'mute');
  assertKeys(ev, ['type', 'room', 'seq', 'ts', 'from', 'user', 'duration'], 'mute event');
  assert.equal(ev.seq, ack.seq);
  const err = await member.expectError({ type: 'send', id: 8, room, text: 'hello?' }, 'muted');
  assert.equal(err.message, `muted in #${room}`);
  await member.expectError({ type: 'edit', room, seq: mine.seq, text: 'edited' }, 'muted');
  await member.expectError({ type: 'react', room, seq: mine.seq, emoji: 'x' }, 'muted');
  // Deleting one's own message is not among the muted requests.
  const j = await member.join(room);
  assert.equal(j.muted_until, ev.ts + 600 * 1000);
  // Typing of the muted user is dropped; the guest's still arrives.
  await member.send({ type: 'typing', room });
  await g.send({ type: 'typing', room });
  const { before: earlier } = await op.until((m) => m.type === 'typing' && m.user === g.name);
  assert.ok(!earlier.some((m) => m.type === 'typing'), JSON.stringify(earlier));
  // An op muted by the owner: topic muted (after rights: a member's topic stays forbidden).
  await owner.expect({ type: 'mute', room, user: op.name }, 'ack');
  await op.expectError({ type: 'topic', room, text: 'x' }, 'muted');
  await member.expectError({ type: 'topic', room, text: 'x' }, 'forbidden');
  assert.equal((await op.join(room)).muted_until, 0); // indefinite
  await owner.expect({ type: 'unmute', room, user: member.name }, 'ack');
  await member.say(room, 'back');
  assert.ok(!('muted_until' in (await member.join(room))));
});

test('mute of a guest by name, and an op\'s moderation while muted itself', async (t) => {
  const { owner, op, guest: g, room } = await staffedRoom(server, t);
  await owner.expect({ type: 'mute', room, user: op.name }, 'ack');
  // Moderation is not among the requests a mute refuses (rule 65).
  await op.expect({ type: 'mute', room, user: g.name, duration: 60 }, 'ack');
  await g.expectError({ type: 'send', room, text: 'hi' }, 'muted');
  assert.ok((await g.join(room)).muted_until > 0);
  await op.expect({ type: 'unmute', room, user: g.name }, 'ack');
  await g.say(room, 'hi');
});

test('moderation rights (rule 61): ops, owner, admins; nobody on an admin; only admins on the owner; only owner and admins on an op', async (t) => {
  const { owner, op, member, guest: g, room } = await staffedRoom(server, t);
  const adm = await adminClient(server, t);
  await adm.join(room);
  for (const type of ['kick', 'ban', 'unban', 'mute', 'unmute']) {
    await member.expectError({ type, room, user: g.name }, 'forbidden');
    await g.expectError({ type, room, user: member.name }, 'forbidden');
    await op.expectError({ type, room, user: owner.name }, 'forbidden');
    await owner.expectError({ type, room, user: adm.name }, 'forbidden');
    await op.expectError({ type, room, user: op.name }, 'bad_request'); // oneself
  }
  const op2 = await user(server, t);
  await op2.join(room);
  await owner.expect({ type: 'role', room, user: op2.name, role: 'op' }, 'ack');
  await op.expectError({ type: 'mute', room, user: op2.name }, 'forbidden');
  await owner.expect({ type: 'mute', room, user: op2.name, duration: 60 }, 'ack');
  await adm.expect({ type: 'mute', room, user: owner.name, duration: 60 }, 'ack');
  await owner.expectError({ type: 'send', room, text: 'x' }, 'muted');
  await adm.expect({ type: 'kick', room, user: owner.name }, 'ack');
  await kickedOf(owner, room);
  // In a dm room there is no moderation; another pair's dm room is forbidden before anything.
  await op.expectError({ type: 'kick', room: dmRoom(op.name, member.name), user: member.name }, 'forbidden');
  await op.expectError({ type: 'mute', room: dmRoom(g.name, member.name), user: member.name }, 'forbidden');
  // Not joined: not_member, before rights.
  await member.expectError({ type: 'kick', room: uniqRoom(), user: op.name }, 'not_member');
});

test('fields (rule 63): reason trimmed, limit, no control character; duration 1..--max-duration, whole; user a name', async (t) => {
  const { owner, member, room } = await staffedRoom(server, t);
  await owner.expectError({ type: 'kick', room, user: member.name, reason: 'a\nb' }, 'bad_request');
  await owner.expectError({ type: 'kick', room, user: member.name, reason: 'tab\there' }, 'bad_request');
  await owner.expectError({ type: 'ban', room, user: member.name, reason: 'x'.repeat(11) }, 'too_long'); // --max-reason 10
  await owner.expectError({ type: 'kick', room, user: member.name, reason: 5 }, 'bad_request');
  await owner.expectError({ type: 'kick', room, user: member.name, reason: null }, 'bad_request');
  for (const duration of [0, -1, 1.5, 7201, '60', true])
    await owner.expectError({ type: 'ban', room, user: member.name, duration }, 'bad_request');
  await owner.expectError({ type: 'mute', room, user: member.name, duration: 7201 }, 'bad_request'); // --max-duration 7200
  await owner.expectError({ type: 'kick', room }, 'bad_request');
  await owner.expectError({ type: 'kick', room, user: 7 }, 'bad_request');
  await owner.expectError({ type: 'unmute', room, user: 'not a name' }, 'bad_name');
  await owner.expectError({ type: 'kick', room: 'No Room', user: 'not a name', reason: 'x'.repeat(11) }, 'bad_name');
  await owner.expectError({ type: 'kick', room, user: 'not a name', reason: 'x'.repeat(11) }, 'bad_name');
  // A duration is taken as given: seconds, up to the limit.
  const ack = await owner.expect({ type: 'mute', room, user: member.name, duration: 7200 }, 'ack');
  const ev = await nextEvent(member, room, 'mute', (m) => m.seq === ack.seq);
  assert.equal(ev.duration, 7200);
  assert.equal(ev.user, member.name);
});

test('moderation takes cids and the send bucket like any event-storing request', async (t) => {
  const s = await serverForTest(t, ['--rate-limit', '2']);
  const owner = await user(s, t);
  const m = await user(s, t);
  const room = uniqRoom();
  await owner.join(room);
  await m.join(room);
  const cid = uniq('c');
  const k = await owner.expect({ type: 'kick', room, user: m.name, cid }, 'ack');
  assert.equal((await owner.expect({ type: 'kick', room, user: m.name, cid }, 'ack')).seq, k.seq); // no token
  await owner.expect({ type: 'mute', room, user: m.name }, 'ack');
  await owner.expectError({ type: 'unmute', room, user: m.name }, 'rate_limited');
  // An error takes no token: a forbidden request from the empty bucket is forbidden, not limited.
  await m.join(room);
  await m.expectError({ type: 'kick', room, user: owner.name }, 'forbidden');
});

test('bans and mutes survive a restart; replay carries the moderation events as delivered live', async (t) => {
  const s = await serverForTest(t, ['--rate-limit', '0']);
  const owner = await user(s, t);
  const b = await user(s, t);
  const c = await user(s, t);
  const room = uniqRoom();
  const j0 = await owner.join(room);
  await b.join(room);
  await c.join(room);
  const acks = [];
  acks.push(await owner.expect({ type: 'kick', room, user: b.name, reason: 'r' }, 'ack'));
  acks.push(await owner.expect({ type: 'ban', room, user: b.name, duration: 3600 }, 'ack'));
  acks.push(await owner.expect({ type: 'mute', room, user: c.name }, 'ack'));
  acks.push(await owner.expect({ type: 'unmute', room, user: uniq('x') }, 'ack'));
  acks.push(await owner.expect({ type: 'unban', room, user: uniq('x') }, 'ack'));
  const live = [];
  for (let i = 0; i < acks.length; i++) live.push(await c.next((m) => m.room === room && m.seq === acks[i].seq));
  await s.kill();
  const s2 = await s.restartInTest(['--rate-limit', '0']);
  const b2 = await (await import('./lib/chat.mjs')).connect(s2, t);
  await b2.login(b.name, b.password);
  await b2.expectError({ type: 'join', room }, 'banned');
  const c2 = await (await import('./lib/chat.mjs')).connect(s2, t);
  await c2.login(c.name, c.password);
  const j = await c2.join(room, j0.seq);
  assert.equal(j.muted_until, 0);
  await c2.expectError({ type: 'send', room, text: 'x' }, 'muted');
  const replay = [];
  for (let i = 0; i < acks.length; i++) replay.push(await c2.next((m) => m.room === room && m.seq !== undefined));
  assert.deepEqual(replay, live);
  await assertNothingBefore(c2, (await (async () => { const o = await (await import('./lib/chat.mjs')).connect(s2, t); await o.login(owner.name, owner.password); await o.join(room); return o; })()), room);
  void guest;
});

test('join order (rule 75): banned before the per-connection too_many_rooms; a dm room is never banned', async (t) => {
  const s = await serverForTest(t, ['--max-rooms', '1']);
  const owner = await user(s, t);
  const m = await user(s, t);
  const room = uniqRoom();
  await owner.join(room);
  await owner.expect({ type: 'ban', room, user: m.name }, 'ack');
  await m.join(uniqRoom()); // at the per-connection limit now
  await m.expectError({ type: 'join', room }, 'banned');
  await m.expectError({ type: 'join', room: 'general' }, 'too_many_rooms');
  const m2 = await tab(s, t, m);
  await m2.expectError({ type: 'history', room }, 'banned');
  assert.equal((await m2.join(dmRoom(m.name, owner.name))).seq, 0);
});
