// Large rooms (protocol 1.1, rules 81-85): joined's member_count and cut member list, no presence
// or typing in a large room, the tick's count (only to connections told another count, encoded
// once), transitions both ways with the unsolicited members reply, who and rooms in pages, telnet.
// The servers run with a small --presence-limit and a short tick (PARLEY_TEST_TICK_MS, a test-only
// hook) so that a room turns large with a handful of users and a tick comes within moments; a
// tick is awaited through the count events it sends, never by sleeping.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { assertKeys, eventually, guest, openRoom, uniq, uniqRoom } from './lib/chat.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import { esc, telnetLogin } from './lib/telnet.mjs';

const LIMIT = 5; // large above 5 users, small again below 4.5
const ENV = { PARLEY_TEST_TICK_MS: '100' };
const ARGS = ['--rate-limit', '0', '--presence-limit', String(LIMIT)];

let server;

before(async () => {
  server = await startChatServer(ARGS, { env: ENV });
});

after(() => server?.dispose());

const lc = (s) => s.toLowerCase();
// Byte order of lower-cased names (rule 84), as the server compares them.
const byLower = (a, b) => (lc(a) < lc(b) ? -1 : lc(a) > lc(b) ? 1 : 0);
const isCount = (room, pred = () => true) => (m) => m.type === 'count' && m.room === room && pred(m);
const isPresence = (room) => (m) => m.type === 'presence' && m.room === room;

// n guests (names from `names`, else fresh) that join `room`, a few at a time.
async function crowd(t, room, n, names) {
  const out = [];
  for (let i = 0; i < n; i += 20) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 20); k++) {
      batch.push(
        (async () => {
          const g = await guest(server, t, names ? names[k] : uniq('c'));
          await g.join(room);
          return g;
        })(),
      );
    }
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

// Waits until every client of `clients` (all of them in the room when it reached n users, its
// first size above the limit) has the count of `room` that says it became large.
async function becameLarge(clients, room, n) {
  for (const c of clients) {
    // Taken with what came before it (presence while the room was small).
    const { match } = await c.until(isCount(room, (x) => x.large === true), undefined, `${room} turning large`);
    assert.deepEqual(match, { type: 'count', room, member_count: n, large: true });
  }
}

// A room kept large whose count changes on demand: clock.tick() adds a user to it and waits until
// every watcher has that tick's count, so whatever an earlier tick sent them has arrived.
async function clock(t) {
  const room = await openRoom(server, t, uniqRoom('clock'));
  const members = await crowd(t, room, LIMIT + 1);
  await becameLarge(members, room, LIMIT + 1);
  const watchers = [];
  let n = LIMIT + 1;
  return {
    room,
    async watch(c) {
      await c.join(room);
      n += 1;
      watchers.push(c);
    },
    // Resolves with, per watcher, the messages it received before that tick's count.
    async tick() {
      await guest(server, t, uniq('k')).then((g) => g.join(room));
      n += 1;
      const seen = [];
      for (const c of watchers) {
        const { before: earlier } = await c.until(isCount(room, (m) => m.member_count === n), undefined, `clock tick to ${n}`);
        seen.push(earlier);
      }
      return seen;
    },
  };
}

test('joined carries member_count and members_truncated in a small room; members lists everyone', async (t) => {
  const room = await openRoom(server, t, uniqRoom('small'));
  const [a, b] = await crowd(t, room, 2);
  const j = await a.request({ type: 'join', id: 'again', room });
  assertKeys(j, ['type', 'id', 'room', 'seq', 'members', 'truncated', 'away', 'status_text', 'topic', 'role', 'owner', 'member_count', 'members_truncated'], 'joined');
  assert.equal(j.member_count, 2);
  assert.equal(j.members_truncated, false);
  assert.deepEqual([...j.members].sort(byLower), [a.name, b.name].sort(byLower));
});

test('a large room: no presence, no typing; each member gets a count at the tick, and only when its count changed', async (t) => {
  const room = await openRoom(server, t, uniqRoom('big'));
  const members = await crowd(t, room, LIMIT + 1);
  const [a, , , , , f] = members;
  // The room turns large at a tick, not at the join that took it over the limit: every member
  // gets the count with large:true, whatever count it was told by its joined.
  await becameLarge(members, room, LIMIT + 1);
  const c = await clock(t);
  await c.watch(a);
  // Nothing changed: two ticks go by without a count of the room.
  for (let i = 0; i < 2; i++) {
    const [seen] = await c.tick();
    assert.deepEqual(seen.filter(isCount(room)), [], 'a count although the room did not change');
  }
  // A join: no presence to anyone; at the next tick a count of 7 to each connection told 6, none
  // to the newcomer (its joined said 7).
  const g = await guest(server, t, uniq('late'));
  const j = await g.join(room);
  const { match: m, before: atJoin } = await a.until(isCount(room), undefined, 'the count after a join');
  assert.deepEqual(m, { type: 'count', room, member_count: LIMIT + 2, large: true });
  assert.deepEqual(atJoin.filter(isPresence(room)), [], 'presence of a join to a large room');
  assert.equal(j.member_count, LIMIT + 2);
  await c.watch(g);
  for (let i = 0; i < 2; i++) {
    const seen = await c.tick();
    assert.deepEqual(seen[1].filter(isCount(room)), [], 'the newcomer got a count it had from joined');
    assert.deepEqual(seen[0].filter(isCount(room)), [], 'a second count for one change');
    assert.deepEqual(seen[0].filter(isPresence(room)), [], 'presence of a join to a large room');
  }
  // Typing is dropped and presence not sent: a message behind them finds nothing before it.
  await f.send({ type: 'typing', room });
  await f.leave(room);
  await g.say(room, 'marker');
  const { before: earlier } = await a.until((x) => x.type === 'message' && x.text === 'marker');
  assert.deepEqual(earlier.filter((x) => x.type === 'typing' || isPresence(room)(x)), []);
  assert.deepEqual(a.pending().filter(isPresence(room)), []);
  const left = await a.next(isCount(room), undefined, 'the count after a leave');
  assert.equal(left.member_count, LIMIT + 1);
});

test('joined in a large room: the requester first, then at most 99 others in byte order of lower-cased names', async (t) => {
  const room = await openRoom(server, t, uniqRoom('cut'));
  // Names whose order differs between raw bytes and lower-cased bytes ('_' sorts between the
  // upper and the lower case letters).
  const stems = ['B_', 'ba', 'Bz', 'a_', 'AB', 'zz', 'Z_', 'm'];
  const names = [];
  for (let i = 0; i < 104; i++) names.push(uniq(stems[i % stems.length]));
  const members = await crowd(t, room, names.length, names);
  // It turned large at some tick on the way; the first member is told every count after that.
  await members[0].next(isCount(room, (m) => m.large && m.member_count === names.length), undefined, 'the count of 104');
  const me = uniq('Mid');
  const g = await guest(server, t, me);
  const j = await g.join(room);
  assert.equal(j.member_count, 105);
  assert.equal(j.members_truncated, true);
  assert.equal(j.members.length, 100);
  assert.equal(j.members[0], me, 'the requester comes first');
  assert.deepEqual(j.members.slice(1), [...names].sort(byLower).slice(0, 99));

  // who pages the same order, with member_count and more, in any page size; after is exclusive
  // and compared lower-cased.
  const all = [...names, me].sort(byLower);
  const whole = await g.expect({ type: 'who', room }, 'members');
  assertKeys(whole, ['type', 'id', 'room', 'members', 'away', 'status_text', 'member_count', 'more'], 'members');
  assert.deepEqual(whole.members, all);
  assert.equal(whole.member_count, 105);
  assert.equal(whole.more, false);
  const paged = [];
  let afterName;
  for (;;) {
    const req = { type: 'who', room, limit: 40 };
    if (afterName !== undefined) req.after = afterName.toUpperCase();
    const page = await g.expect(req, 'members');
    assert.equal(page.member_count, 105);
    paged.push(...page.members);
    assert.equal(page.more, paged.length < all.length, `more after ${paged.length}`);
    if (!page.more) break;
    afterName = page.members.at(-1);
  }
  assert.deepEqual(paged, all);
  const one = await g.expect({ type: 'who', room, limit: 1, after: 'B' }, 'members');
  assert.deepEqual(one.members, [all.find((n) => lc(n) > 'b')]);
  assert.equal(one.more, true);
  const none = await g.expect({ type: 'who', room, after: '\u{10FFFF}' }, 'members');
  assert.deepEqual(none.members, []);
  assert.equal(none.more, false);
  assert.equal(none.member_count, 105);

  // Telnet: /who in a large room prints the count and the first 50 names; its join notice says
  // (N online); no count line, no presence line.
  const tel = await telnetLogin(server, t, uniq('T'));
  await tel.send(`/join ${room}`);
  await tel.nextLine(`* You joined #${room} (106 online).`);
  await tel.send('/who');
  const withTel = [...all, tel.name].sort(byLower);
  const line = await tel.nextLine(new RegExp(`^\\* In #${esc(room)}: `));
  assert.equal(line, `* In #${room}: 106 online; the first 50: ${withTel.slice(0, 50).join(', ')} and 56 more`);
  tel.discardLines();
  const late = await guest(server, t, uniq('z'));
  await late.join(room);
  await g.next(isCount(room, (m) => m.member_count === 107), undefined, 'the count of 107');
  await late.say(room, 'seen by telnet');
  const { before: earlier } = await tel.until(`[#${room}] ${late.name}: seen by telnet`);
  assert.deepEqual(earlier, [], 'telnet was shown something of a large room besides its messages');
});

test('large, then small again below 0.9 N: count large:false to every member and members without id; presence flows again', async (t) => {
  const room = await openRoom(server, t, uniqRoom('ebb'));
  const members = await crowd(t, room, LIMIT + 1);
  await becameLarge(members, room, LIMIT + 1);
  // 5 users: not above the limit, but not below 0.9 x 5 either: still large.
  await members[5].leave(room);
  for (const c of members.slice(0, 5)) {
    assert.deepEqual(await c.next(isCount(room)), { type: 'count', room, member_count: 5, large: true });
  }
  // 4 users, below 4.5: small again.
  await members[4].leave(room);
  const stay = members.slice(0, 4);
  const names = stay.map((c) => c.name).sort(byLower);
  for (const c of stay) {
    const { match, before: earlier } = await c.until(isCount(room), undefined, 'the count turning small');
    assert.deepEqual(match, { type: 'count', room, member_count: 4, large: false });
    assert.deepEqual(earlier.filter(isPresence(room)), [], 'presence before the room was small');
    const m = await c.next((x) => x.type === 'members' && x.room === room, undefined, 'the unsolicited members');
    assert.deepEqual(m, { type: 'members', room, members: names, away: [], status_text: {}, member_count: 4, more: false });
  }
  // Presence flows again, and typing.
  const g = await guest(server, t, uniq('back'));
  await g.join(room);
  assert.deepEqual(await stay[0].next(isPresence(room)), { type: 'presence', room, user: g.name, state: 'online' });
  await g.send({ type: 'typing', room });
  assert.deepEqual(await stay[1].next((x) => x.type === 'typing'), { type: 'typing', room, user: g.name });
});

test('a room is large only above the limit, and the first time at a tick: a member told the same count still gets large:true', async (t) => {
  const room = await openRoom(server, t, uniqRoom('edge'));
  const members = await crowd(t, room, LIMIT);
  const c = await clock(t);
  await c.watch(members[0]);
  for (let i = 0; i < 2; i++) {
    const [seen] = await c.tick();
    assert.deepEqual(seen.filter(isCount(room)), [], 'a count for a room at the limit');
  }
  const last = await guest(server, t, uniq('over'));
  const j = await last.join(room);
  assert.equal(j.member_count, LIMIT + 1);
  assert.equal(j.members_truncated, false);
  await becameLarge([...members, last], room, LIMIT + 1);
});

test('who and rooms: limit outside 1..200 and a non-string after are bad_request; rooms pages in byte order with more', async (t) => {
  const g = await guest(server, t, uniq('pg'));
  for (const type of ['who', 'rooms']) {
    const base = type === 'who' ? { type, room: 'general' } : { type };
    for (const bad of [{ limit: 0 }, { limit: 201 }, { limit: 1.5 }, { limit: '5' }, { limit: null }, { after: 5 }, { after: null }, { after: ['a'] }]) {
      await g.expectError({ ...base, ...bad }, 'bad_request');
    }
    assert.equal((await g.expect({ ...base, limit: 200 }, type === 'who' ? 'members' : 'rooms')).type, type === 'who' ? 'members' : 'rooms');
  }
  // bad_request ranks before bad_name.
  await g.expectError({ type: 'who', room: 'no such', limit: 0 }, 'bad_request');

  const prefix = `zzz${uniqRoom('p').replace(/[^a-z0-9]/g, '')}`.slice(0, 28);
  const names = ['a', 'b', 'c', 'd', 'e'].map((x) => `${prefix}${x}`);
  for (const n of names) await g.join(await openRoom(server, t, n));
  const p1 = await g.expect({ type: 'rooms', after: prefix.toUpperCase(), limit: 2 }, 'rooms');
  assertKeys(p1, ['type', 'id', 'rooms', 'more'], 'rooms');
  assert.deepEqual(p1.rooms, names.slice(0, 2).map((name) => ({ name, members: 1, seq: 0, topic: '' })));
  assert.equal(p1.more, true);
  const p2 = await g.expect({ type: 'rooms', after: names[1], limit: 2 }, 'rooms');
  assert.deepEqual(p2.rooms.map((r) => r.name), names.slice(2, 4));
  assert.equal(p2.more, true);
  const p3 = await g.expect({ type: 'rooms', after: names[3], limit: 200 }, 'rooms');
  assert.deepEqual(p3.rooms.map((r) => r.name), names.slice(4));
  assert.equal(p3.more, false);
  // Without after, from the first room in byte order; a whole walk lists every room once.
  const all = await g.allRooms();
  const sorted = [...all.map((r) => r.name)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  assert.deepEqual(all.map((r) => r.name), sorted);
  for (const n of names) assert.ok(sorted.includes(n));
});

test('a count is encoded once per room and tick and shared by its members; telnet members get none', async (t) => {
  const own = await startChatServer(ARGS, { env: ENV });
  t.after(() => own.dispose());
  const room = await openRoom(own, t, uniqRoom('shared'));
  // A telnet user and 5 on WebSocket: at the limit, small; a sixth takes it over at a tick.
  const tel = await telnetLogin(own, t, uniq('T'));
  await tel.send(`/join ${room}`);
  await tel.nextLine(`* You joined #${room} (1 online).`);
  const members = [];
  for (let i = 0; i < LIMIT; i++) {
    const g = await guest(own, t, uniq('s'));
    await g.join(room);
    members.push(g);
  }
  for (const c of members) await c.next(isCount(room, (m) => m.large && m.member_count === LIMIT + 1), undefined, 'large');
  // What telnet was shown while the room was small: presence lines, as always.
  await eventually(() => tel.pendingLines().filter((l) => / joined #/.test(l)).length === LIMIT, undefined, 'presence on telnet');
  tel.discardLines();
  const counts = async () => {
    const m = await scrape(own);
    return [sum(m, 'parley_count_events_total', { stage: 'encoded' }), sum(m, 'parley_count_events_total', { stage: 'sent' })];
  };
  // One encoding for the room's turn to large, sent to its 5 WebSocket members (not to telnet).
  assert.deepEqual(await counts(), [1, LIMIT]);
  // A join: one more encoding, sent to the 5 told another count, not to the newcomer.
  const g = await guest(own, t, uniq('n'));
  await g.join(room);
  for (const c of members) await c.next(isCount(room, (m) => m.member_count === LIMIT + 2));
  assert.deepEqual(await eventually(async () => { const c = await counts(); return c[0] === 2 && c; }), [2, 2 * LIMIT]);
  await g.say(room, 'to telnet');
  const { before: earlier } = await tel.until(`[#${room}] ${g.name}: to telnet`);
  assert.deepEqual(earlier, [], 'telnet showed a count or presence of a large room');
});

test('joined in a small room of long names: the whole list, on a plain and a compressing connection, and the next event after it intact', async (t) => {
  // Past a few KB the list goes out by reference to the room's blocks, in pieces of one frame;
  // past 8 KiB the room keeps it in several blocks (member_list.c), each a piece.
  const big = await startChatServer(
    ['--rate-limit', '0', '--presence-limit', '500', '--max-conns-per-ip', '0'],
    {},
  );
  t.after(() => big.dispose());
  const room = await openRoom(big, t, uniqRoom('long'));
  const names = [];
  for (let i = 0; i < 480; i += 20) {
    const batch = [];
    for (let k = i; k < i + 20; k++) {
      const name = `${uniq('n')}_${'x'.repeat(32)}`.slice(0, 32);
      names.push(name);
      batch.push(guest(big, t, name).then((g) => g.join(room)));
    }
    await Promise.all(batch);
  }
  for (const perMessageDeflate of [false, { threshold: 0 }]) {
    const c = await guest(big, t, uniq('j'), { perMessageDeflate });
    names.push(c.name); // and stays, for the next round
    const j = await c.join(room);
    assert.ok(JSON.stringify(j.members).length > 16384, 'the list spans several blocks');
    assert.equal(j.member_count, names.length);
    assert.deepEqual(j.members, [...names].sort(byLower), 'every name once, in order');
    const sent = await c.request({ type: 'send', id: 's', room, text: 'after the list' });
    const { match } = await c.until((m) => m.type === 'message' && m.seq === sent.seq, undefined, 'its own message');
    assert.equal(match.text, 'after the list');
  }
});

test('a room is found large at the join that takes it past the limit, not at a later tick; a room ticks at most once a tick period', async (t) => {
  // Ticks 10 minutes apart: a count within this test can only come from the prompt tick of a room
  // that grew past the limit (its first tick), never from a periodic one.
  const slow = await startChatServer(ARGS, { env: { PARLEY_TEST_TICK_MS: '600000' } });
  t.after(() => slow.dispose());
  const room = await openRoom(slow, t, uniqRoom('grow'));
  const members = [];
  for (let i = 0; i < LIMIT; i++) {
    const g = await guest(slow, t, uniq('g'));
    await g.join(room);
    members.push(g);
  }
  // Up to the limit the room is small: the first member heard of every other join.
  const heard = await members[0].until(isPresence(room), undefined, 'presence of a small room');
  assert.equal(heard.match.state, 'online');
  // The join past the limit: its joiner gets the full list, then everyone the count at once.
  const over = await guest(slow, t, uniq('over'));
  const j = await over.join(room);
  assert.equal(j.member_count, LIMIT + 1);
  assert.equal(j.members.length, LIMIT + 1);
  members.push(over);
  await becameLarge(members, room, LIMIT + 1);
  // Large now: a join is told to nobody, and the next count waits for the room's next tick, 10
  // minutes on (a room ticks at most once a period): a message sent after the join comes first.
  const quiet = await guest(slow, t, uniq('quiet'));
  assert.equal((await quiet.join(room)).member_count, LIMIT + 2);
  const sent = await over.request({ type: 'send', id: 's', room, text: 'after the quiet join' });
  for (const c of members) {
    const { before: earlier } = await c.until((m) => m.type === 'message' && m.seq === sent.seq, undefined, 'the message');
    assert.deepEqual(earlier.filter((m) => m.room === room && ['presence', 'count'].includes(m.type)), [], 'told of a join in a large room');
  }
});
