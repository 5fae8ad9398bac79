// Rooms: join/joined, leave/left, rooms, who/members, presence, since and replay, room names.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import {
  assertKeys,
  assertSeqRun,
  connect,
  guest,
  openRoom,
  tab,
  uniq,
  uniqRoom,
  user,
} from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

const isPresence = (m) => m.type === 'presence';
const sorted = (a) => [...a].sort();

test('join of a new room → joined {type,id,room,seq:0,members:[me],truncated:false} exactly', async (t) => {
  const u = await user(server, t);
  const room = uniqRoom();
  const j = await u.request({ type: 'join', id: 3, room });
  // A registered user's joined carries its read marker (protocol 1.1 rule 66).
  assert.deepEqual(j, { type: 'joined', id: 3, room, seq: 0, members: [u.name], truncated: false, away: [], status_text: {}, topic: '', role: 'owner', owner: u.name, member_count: 1, members_truncated: false, read: 0 });
});

test('join with since on a new room: seq 0, truncated present and false, nothing replayed', async (t) => {
  const u = await user(server, t);
  const room = uniqRoom();
  const j = await u.request({ type: 'join', id: 'j', room, since: 0 });
  assert.deepEqual(j, { type: 'joined', id: 'j', room, seq: 0, members: [u.name], truncated: false, away: [], status_text: {}, topic: '', role: 'owner', owner: u.name, member_count: 1, members_truncated: false, read: 0 });
  await u.say(room, 'first');
  const { match, before } = await u.until((m) => m.type === 'message' && m.text === 'first');
  assert.equal(match.seq, 1);
  assert.deepEqual(before.filter((m) => m.type === 'message'), []);
});

test('room names are case folded to lower case', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom('caps');
  const j = await a.join(room.toUpperCase());
  assert.equal(j.room, room);
  const jb = await b.join(room);
  assert.deepEqual(sorted(jb.members), sorted([a.name, b.name]));
  await b.say(room.replace(/^c/, 'C'), 'folded');
  const m = await a.nextMessage(room);
  assert.equal(m.room, room);
  assert.equal(m.text, 'folded');
});

test('room name of 1 and 32 characters from a-z 0-9 _ - are accepted', async (t) => {
  const u = await user(server, t);
  for (const room of ['z', `${'a'.repeat(20)}_-09`.padEnd(32, 'q')]) {
    const j = await u.join(room);
    assert.equal(j.room, room);
  }
});

test('invalid room names → bad_name for join, leave, who, history and send (rule 9)', async (t) => {
  const u = await user(server, t);
  for (const room of ['', 'has space', 'x'.repeat(33), 'a.b', 'café', 'a/b', '#general', 'dm:', 'dm:x', 'DM:a:b',
    'ab\u202ecd', 'ab\u2067cd', 'ab\u2028cd']) {
    await u.expectError({ type: 'join', room }, 'bad_name');
    await u.expectError({ type: 'leave', room }, 'bad_name');
    await u.expectError({ type: 'who', room }, 'bad_name');
    await u.expectError({ type: 'history', room }, 'bad_name');
    await u.expectError({ type: 'send', room, text: 'x' }, 'bad_name');
  }
});

test('general always exists: rooms lists it before anyone joined it', async (t) => {
  const u = await user(server, t);
  const rooms = await u.allRooms();
  const general = rooms.find((x) => x.name === 'general');
  assert.ok(general, `general missing from ${JSON.stringify(rooms)}`);
  const j = await u.join('general');
  assert.equal(j.room, 'general');
  assert.ok(j.members.includes(u.name));
});

test('joined.seq is the latest seq; since replays seq > since in order, then live messages', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  for (let i = 1; i <= 5; i++) await a.say(room, `m${i}`);
  await a.messages(room, 5);
  const b = await user(server, t);
  const j = await b.request({ type: 'join', room, since: 2 });
  assert.equal(j.type, 'joined');
  assert.equal(j.seq, 5);
  assert.equal(j.truncated, false);
  const replay = await b.messages(room, 3);
  assertSeqRun(replay, room, 3, 5, 'replay after since=2');
  assert.deepEqual(replay.map((m) => m.text), ['m3', 'm4', 'm5']);
  await a.say(room, 'live');
  const live = await b.nextMessage(room);
  assert.equal(live.seq, 6);
  assert.equal(live.text, 'live');
  // joined came before the replayed messages.
  const iJoined = b.log.findIndex((m) => m.type === 'joined');
  const iFirst = b.log.findIndex((m) => m.type === 'message');
  assert.ok(iJoined >= 0 && iJoined < iFirst, 'a replayed message arrived before joined');
});

test('join without since replays nothing', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'old');
  const b = await user(server, t);
  const j = await b.join(room);
  assert.equal(j.seq, 1);
  await a.say(room, 'new');
  const { match, before } = await b.until((m) => m.type === 'message');
  assert.equal(match.text, 'new');
  assert.equal(match.seq, 2);
  assert.deepEqual(before.filter((m) => m.type === 'message'), []);
});

test('since at or above the latest seq replays nothing (rule 11)', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'one');
  await a.say(room, 'two');
  for (const since of [2, 3, 1000000]) {
    const b = await user(server, t);
    const j = await b.join(room, since);
    assert.equal(j.seq, 2 + (since === 2 ? 0 : since === 3 ? 1 : 2));
    const text = `after-since-${since}`;
    await a.say(room, text);
    const { match, before } = await b.until((m) => m.type === 'message');
    assert.equal(match.text, text, `since=${since}: first message is ${JSON.stringify(match)}`);
    assert.deepEqual(before.filter((m) => m.type === 'message'), []);
  }
});

test('negative or non-integer since → bad_request (rule 11)', async (t) => {
  const u = await user(server, t);
  const room = uniqRoom();
  for (const since of [-1, -100, 1.5, '3', true, [], {}]) {
    await u.expectError({ type: 'join', room, since }, 'bad_request');
  }
  // None of these joined the room.
  await u.expectError({ type: 'leave', room }, 'not_member');
});

test('double join → joined again, no presence, and since replays again (rule 10)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  await a.next(isPresence, undefined, 'presence of b');
  await a.say(room, 'x1');
  await b.nextMessage(room);
  const again = await b.request({ type: 'join', id: 9, room, since: 0 });
  assert.deepEqual({ ...again, members: sorted(again.members) }, {
    type: 'joined',
    id: 9,
    room,
    seq: 1,
    members: sorted([a.name, b.name]),
    truncated: false,
    away: [],
    status_text: {},
    topic: '',
    role: 'member',
    owner: a.name,
    member_count: 2,
    members_truncated: false,
    read: 0, // the marker b's first join set at the room's latest seq then (rule 66)
  });
  const replay = await b.messages(room, 1);
  assertSeqRun(replay, room, 1, 1, 'replay of the double join');
  await b.say(room, 'marker');
  const { before } = await a.until((m) => m.type === 'message' && m.text === 'marker');
  assert.deepEqual(before.filter(isPresence), [], 'a double join sent presence');
  // Still one membership: one leave leaves, a second one is not_member.
  await b.leave(room);
  await b.expectError({ type: 'leave', room }, 'not_member');
});

test('leave → {type:"left", id, room} exactly; leaving a room not joined → not_member', async (t) => {
  const u = await user(server, t);
  const room = uniqRoom();
  await u.expectError({ type: 'leave', room }, 'not_member');
  await u.expectError({ type: 'leave', room: 'general' }, 'not_member');
  await u.join(room);
  const l = await u.request({ type: 'leave', id: 4, room });
  assert.deepEqual(l, { type: 'left', id: 4, room });
  await u.expectError({ type: 'leave', room }, 'not_member');
  await u.expectError({ type: 'send', room, text: 'x' }, 'not_member');
});

test('after leave, no more messages of that room arrive', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  const other = uniqRoom();
  await a.join(room);
  await a.join(other);
  await b.join(room);
  await b.join(other);
  await b.leave(room);
  await a.say(room, 'not for b');
  await a.nextMessage(room);
  await a.say(other, 'for b');
  const { match, before } = await b.until((m) => m.type === 'message');
  assert.equal(match.text, 'for b');
  assert.deepEqual(before.filter((m) => m.type === 'message'), []);
});

test('members leaving from anywhere in a room (by leave and by disconnect): the rest get each message once, the leavers none', async (t) => {
  const room = await openRoom(server, t);
  const members = [];
  for (let i = 0; i < 12; i++) {
    const g = await guest(server, t);
    await g.join(room);
    members.push(g);
  }
  // The first four leave (one by disconnecting), then all but the last two: whoever took a
  // leaver's place in the server's member list must still be found when it leaves in turn.
  const rounds = [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]];
  const gone = new Set();
  const speaker = members[11];
  for (let round = 0; round < rounds.length; round++) {
    for (const i of rounds[round]) {
      if (i === 2) members[i].terminate();
      else await members[i].leave(room);
      gone.add(i);
    }
    await speaker.say(room, `round ${round}`);
    for (let i = 0; i < members.length; i++) {
      if (!gone.has(i)) assert.equal((await members[i].nextMessage(room)).text, `round ${round}`, `member ${i}`);
    }
  }
  for (let i = 0; i < members.length; i++) {
    if (i === 2) continue; // disconnected
    await members[i].sync();
    const extra = members[i].pending().filter((m) => m.type === 'message');
    assert.deepEqual(extra.map((m) => m.text), [], `member ${i} got a message twice, or after it left`);
  }
});

test('presence online: {type,room,user,state} to the others, not to the joiner', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  const p = await a.next(isPresence, undefined, 'presence online of b');
  assert.deepEqual(p, { type: 'presence', room, user: b.name, state: 'online' });
  await b.say(room, 'marker');
  const { before } = await b.until((m) => m.type === 'message' && m.text === 'marker');
  assert.deepEqual(before.filter(isPresence), [], 'the joiner got presence');
});

test('presence: a second tab joining gives no second online; offline only when the last tab leaves', async (t) => {
  const a = await user(server, t);
  // A guest: its leave stays its connection's (a registered user's leaves every tab: rule 67).
  const b1 = await guest(server, t);
  const b2 = await tab(server, t, b1);
  const room = uniqRoom();
  await a.join(room);
  await b1.join(room);
  assert.deepEqual(await a.next(isPresence), { type: 'presence', room, user: b1.name, state: 'online' });
  const j2 = await b2.join(room);
  assert.deepEqual(sorted(j2.members), sorted([a.name, b1.name]), 'members lists a user once');
  await b2.say(room, 'm1');
  let r = await a.until((m) => m.type === 'message' && m.text === 'm1');
  assert.deepEqual(r.before.filter(isPresence), [], 'second tab joining sent presence');
  await b1.leave(room);
  await b2.say(room, 'm2');
  r = await a.until((m) => m.type === 'message' && m.text === 'm2');
  assert.deepEqual(r.before.filter(isPresence), [], 'leaving while another tab stays sent presence');
  await b2.leave(room);
  assert.deepEqual(await a.next(isPresence), { type: 'presence', room, user: b1.name, state: 'offline' });
});

test('presence offline when a user leaves; rejoining is online again', async (t) => {
  const a = await user(server, t);
  const b = await guest(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  await a.next(isPresence);
  await b.leave(room);
  assert.deepEqual(await a.next(isPresence), { type: 'presence', room, user: b.name, state: 'offline' });
  await b.join(room);
  assert.deepEqual(await a.next(isPresence), { type: 'presence', room, user: b.name, state: 'online' });
});

test('a disconnect counts as leaving every room of the connection (rule 13)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const rooms = [uniqRoom(), uniqRoom()];
  for (const room of rooms) {
    await a.join(room);
    await b.join(room);
  }
  for (let i = 0; i < 2; i++) await a.next(isPresence);
  b.terminate();
  const offline = [];
  for (let i = 0; i < 2; i++) offline.push(await a.next(isPresence, undefined, 'offline after disconnect'));
  assert.deepEqual(
    offline.sort((x, y) => x.room.localeCompare(y.room)),
    rooms.sort().map((room) => ({ type: 'presence', room, user: b.name, state: 'offline' })),
  );
  const w = await a.expect({ type: 'who', room: rooms[0] }, 'members');
  assert.deepEqual(w.members, [a.name]);
});

test('a disconnect of one tab while another tab stays in the room gives no offline', async (t) => {
  const a = await user(server, t);
  const b1 = await user(server, t);
  const b2 = await tab(server, t, b1);
  const room = uniqRoom();
  await a.join(room);
  await b1.join(room);
  await b2.join(room);
  await a.next(isPresence);
  b1.terminate();
  await b1.closed;
  // The server notices the disconnect at some point; who must keep b (b2 is still there).
  await b2.say(room, 'still here');
  const { before } = await a.until((m) => m.type === 'message' && m.text === 'still here');
  assert.deepEqual(before.filter(isPresence), []);
  const w = await a.expect({ type: 'who', room }, 'members');
  assert.deepEqual(sorted(w.members), sorted([a.name, b1.name]));
});

test('members: users once each, registered spelling, requester included (rule 12)', async (t) => {
  const room = uniqRoom();
  const name = uniq('Spelled');
  const reg = await connect(server, t);
  await reg.register(name);
  const s1 = await connect(server, t);
  await s1.login(name.toLowerCase(), 'correct-horse-9');
  const s2 = await connect(server, t);
  await s2.login(name.toUpperCase(), 'correct-horse-9');
  const g = await guest(server, t, uniq('Gu'));
  await s1.join(room);
  await s2.join(room);
  const j = await g.join(room);
  assert.deepEqual(sorted(j.members), sorted([name, g.name]));
  const w = await g.request({ type: 'who', id: 6, room });
  assertKeys(w, ['type', 'id', 'room', 'members', 'away', 'status_text', 'member_count', 'more'], 'members reply');
  assert.equal(w.member_count, 2);
  assert.equal(w.more, false);
  assert.equal(w.type, 'members');
  assert.equal(w.id, 6);
  assert.equal(w.room, room);
  assert.deepEqual(sorted(w.members), sorted([name, g.name]));
});

test('who works on a room not joined, and on an unknown room → empty members (rule 14)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = await b.expect({ type: 'who', room }, 'members');
  assert.deepEqual(w.members, [a.name]);
  const unknown = uniqRoom('nobody');
  const w2 = await b.expect({ type: 'who', room: unknown }, 'members');
  assert.deepEqual(w2, { type: 'members', id: w2.id, room: unknown, members: [], away: [], status_text: {}, member_count: 0, more: false });
});

test('rooms → {type,id,rooms:[{name,members,seq}]}: every public room with users in it now', async (t) => {
  const a = await user(server, t);
  const a2 = await tab(server, t, a);
  const b = await user(server, t);
  const room = uniqRoom();
  const empty = uniqRoom();
  await a.join(room);
  await a2.join(room);
  await b.join(room);
  await a.say(room, 'one');
  await a.say(room, 'two');
  await b.join(empty);
  await b.leave(empty);
  const r = await b.request({ type: 'rooms', id: 5 });
  assertKeys(r, ['type', 'id', 'rooms', 'more'], 'rooms reply');
  assert.equal(r.type, 'rooms');
  assert.equal(r.id, 5);
  for (const entry of r.rooms) assertKeys(entry, ['name', 'members', 'seq', 'topic'], `rooms entry ${entry.name}`);
  r.rooms = await b.allRooms();
  const mine = r.rooms.find((x) => x.name === room);
  assert.deepEqual(mine, { name: room, members: 2, seq: 2, topic: '' }, 'members counts users, not connections');
  // A room is kept for its history after everyone left.
  const left = r.rooms.find((x) => x.name === empty);
  assert.deepEqual(left, { name: empty, members: 0, seq: 0, topic: '' });
  const names = r.rooms.map((x) => x.name);
  assert.equal(new Set(names).size, names.length, 'a room listed twice');
});

test('a room keeps its seq after everyone left', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'kept');
  await a.leave(room);
  const b = await user(server, t);
  const j = await b.join(room, 0);
  assert.equal(j.seq, 1);
  assert.deepEqual(j.members, [b.name]);
  const [m] = await b.messages(room, 1);
  assert.equal(m.text, 'kept');
});

test('rooms never lists dm rooms (rule 43)', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  await a.dm(b.name, 'a dm');
  await a.join(`dm:${[a.name, b.name].map((n) => n.toLowerCase()).sort().join(':')}`);
  const dms = (await a.allRooms()).filter((x) => x.name.includes(':'));
  assert.deepEqual(dms, []);
});

test('requests are handled in order: join, send and leave pipelined without waiting', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  const [joined, ack, left, after] = await Promise.all([
    a.request({ type: 'join', room }),
    a.request({ type: 'send', room, text: 'right after join' }),
    a.request({ type: 'leave', room }),
    a.request({ type: 'send', room, text: 'right after leave' }),
  ]);
  assert.equal(joined.type, 'joined', JSON.stringify(joined));
  assert.equal(ack.type, 'ack', `a send pipelined after join: ${JSON.stringify(ack)}`);
  assert.equal(left.type, 'left', JSON.stringify(left));
  assert.equal(after.code, 'not_member', `a send pipelined after leave: ${JSON.stringify(after)}`);
});

test('requests are handled in order: login then join pipelined without waiting for welcome', async (t) => {
  const c = await connect(server, t);
  const room = await openRoom(server, t);
  const [welcome, joined] = await Promise.all([
    c.request({ type: 'login', name: uniq('pipe') }),
    c.request({ type: 'join', room }),
  ]);
  assert.equal(welcome.type, 'welcome', JSON.stringify(welcome));
  assert.equal(joined.type, 'joined', `a join pipelined after login: ${JSON.stringify(joined)}`);
});

test('"dm" without a colon is an ordinary public room name (rule 9: dm: is a separate namespace)', async (t) => {
  const a = await user(server, t);
  const j = await a.join('dm');
  assert.equal(j.room, 'dm');
  assert.ok((await a.allRooms()).some((x) => x.name === 'dm'));
});

test('presence names the user in registered spelling, whatever case it logged in with', async (t) => {
  const name = uniq('PreS');
  const reg = await connect(server, t);
  await reg.register(name);
  const b = await connect(server, t);
  await b.login(name.toLowerCase(), 'correct-horse-9');
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  assert.deepEqual(await a.next(isPresence), { type: 'presence', room, user: name, state: 'online' });
  await b.send({ type: 'typing', room });
  assert.deepEqual(await a.next((m) => m.type === 'typing'), { type: 'typing', room, user: name });
});
