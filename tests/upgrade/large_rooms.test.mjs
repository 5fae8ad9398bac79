// Large rooms across a live upgrade: each connection's record (version 3) carries, per room, the
// user count it was last told and whether the room was large, so the new process tells a moved
// connection nothing it had already: no count, no presence, no members burst at its first ticks,
// and the next real change gives one count. A version 2 record (PARLEY_TEST_RECORD_VERSION=
// previous, as from an older binary) carries neither: the new process finds the room large at its
// first tick as if anew and says so to every member once, which is what rule 83 asks of a room
// that becomes large.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { guest, uniq, uniqRoom } from '../chat/lib/chat.mjs';
import { Lineage, parleyBin } from './lib/upgrade.mjs';

const LIMIT = 3;
const isCount = (room, pred = () => true) => (m) => m.type === 'count' && m.room === room && pred(m);
const about = (room) => (m) => m.room === room && ['count', 'presence', 'members', 'typing'].includes(m.type);

// Four guests in two large rooms: `room` (just them) and `clock` (them and one more), every count
// told. Returns {lineage, server, clients, room, clock}.
async function twoLargeRooms(t, env) {
  const lineage = await Lineage.start(t, ['--rate-limit', '0', '--presence-limit', String(LIMIT), '--upgrade-binary', parleyBin], {
    env: { PARLEY_TEST_TICK_MS: '100', ...env },
  });
  const server = lineage.server;
  const room = uniqRoom('lr');
  const clock = uniqRoom('clk');
  const clients = [];
  for (let i = 0; i < LIMIT + 1; i++) {
    const g = await guest(server, t, uniq('m'));
    await g.join(room);
    clients.push(g);
  }
  for (const c of clients) {
    const { match } = await c.until(isCount(room, (m) => m.large), undefined, 'the room turning large');
    assert.deepEqual(match, { type: 'count', room, member_count: LIMIT + 1, large: true });
  }
  // The clients first: the fourth takes the room past the limit and its tick tells all four it is
  // large; the extra user then changes the count, which the next tick tells them all.
  const extra = await guest(server, t, uniq('x'));
  for (const c of clients) await c.join(clock);
  await extra.join(clock);
  for (const c of clients) await c.until(isCount(clock, (m) => m.large && m.member_count === LIMIT + 2), undefined, 'the clock turning large');
  return { lineage, server, clients, room, clock };
}

// One more user in the clock room, and each client's messages up to that tick's count.
async function tick(t, server, clients, clock, n) {
  await (await guest(server, t, uniq('k'))).join(clock);
  const seen = [];
  for (const c of clients) seen.push((await c.until(isCount(clock, (m) => m.member_count === n), undefined, `the clock at ${n}`)).before);
  return seen;
}

test('live upgrade (records v3 on): a large room stays large with no count, presence or members burst; the next change gives one count', async (t) => {
  const { lineage, server, clients, room, clock } = await twoLargeRooms(t);
  await lineage.upgrade();
  const adopted = (await lineage.waitLog(lineage.current, 'handover_records')).fields.versions;
  assert.ok(Number(adopted) >= 3, `records of version ${adopted}: the told counts came in version 3`);
  // Two ticks of the new process go by: nothing about the room reaches any member.
  for (const n of [LIMIT + 3, LIMIT + 4]) {
    const seen = await tick(t, server, clients, clock, n);
    for (const s of seen) assert.deepEqual(s.filter(about(room)), [], 'a moved connection was told about the room again');
  }
  // A join after the move: no presence (still large), one count at the next tick.
  const late = await guest(server, t, uniq('late'));
  const j = await late.join(room);
  assert.equal(j.member_count, LIMIT + 2);
  for (const c of clients) {
    const { match, before } = await c.until(isCount(room), undefined, 'the count after the join');
    assert.deepEqual(match, { type: 'count', room, member_count: LIMIT + 2, large: true });
    assert.deepEqual(before.filter(about(room)), []);
  }
  const seen = await tick(t, server, clients, clock, LIMIT + 5);
  for (const s of seen) assert.deepEqual(s.filter(about(room)), [], 'a second count for one change');
});

test('live upgrade from records v2 (no told counts): the room is found large anew at the first tick, told once', async (t) => {
  const { lineage, server, clients, room, clock } = await twoLargeRooms(t, { PARLEY_TEST_RECORD_VERSION: '2' });
  await lineage.upgrade();
  assert.equal((await lineage.waitLog(lineage.current, 'handover_records')).fields.versions, '2');
  for (const c of clients) {
    const { match } = await c.until(isCount(room), undefined, 'the count of a room found large');
    assert.deepEqual(match, { type: 'count', room, member_count: LIMIT + 1, large: true });
  }
  for (const n of [LIMIT + 3, LIMIT + 4]) {
    const seen = await tick(t, server, clients, clock, n);
    for (const s of seen) assert.deepEqual(s.filter(about(room)), [], 'told twice');
  }
});
