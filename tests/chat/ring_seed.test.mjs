// Replays after a restart (the hub's ring of recent messages is empty): the first join with
// `since` seeds the ring with one read of the room's newest page, the joins after it replay from
// memory; every replay is exactly the events after `since`, in order, in their current forms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTest } from './lib/server.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import { connect, uniqRoom, user } from './lib/chat.mjs';

const ARGS = ['--rate-limit', '0'];

// The store reads so far: pages of joins' replays, and ring seeds.
async function reads(server) {
  const m = await scrape(server);
  return { pages: sum(m, 'parley_replay_reads_total'), seeds: sum(m, 'parley_ring_seed_reads_total') };
}

// Joins room with since and takes the replay up to the joined seq; nothing else of the room's
// may have come (checked by a round trip after it).
async function replay(c, room, since) {
  const j = await c.join(room, since);
  const got = [];
  while (got.length < j.seq - since) got.push(await c.next((m) => m.room === room && m.seq !== undefined));
  await c.expect({ type: 'rooms' }, 'rooms');
  assert.deepEqual(c.pending().filter((m) => m.room === room && m.seq !== undefined), [], 'more than the replay');
  return { joined: j, events: got };
}

// A room with a's messages 1..n (texts "m<seq>"), and a's connection.
async function roomWith(server, t, n) {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  for (let i = 1; i <= n; i++) assert.equal((await a.say(room, `m${i}`)).seq, i);
  return { a, room };
}

test('after a restart: replays exact and in order; one seed read, then none', async (t) => {
  const server = await serverForTest(t, ARGS);
  const { room } = await roomWith(server, t, 10);
  const whole = (await replay(await user(server, t), room, 0)).events; // from the ring

  await server.kill();
  const again = await server.restartInTest(ARGS);
  const r1 = await replay(await user(again, t), room, 2);
  assert.deepEqual(r1.events, whole.slice(2), 'replay after the restart differs from the ring before it');
  assert.deepEqual(await reads(again), { pages: 0, seeds: 1 });
  // Covered by the ring now: no read at all, whatever the since.
  for (const since of [9, 5, 0]) {
    const r = await replay(await user(again, t), room, since);
    assert.deepEqual(r.events, whole.slice(since), `the replay of since ${since}`);
  }
  assert.deepEqual(await reads(again), { pages: 0, seeds: 1 });
});

test('after a restart with new messages first: the seed goes below them', async (t) => {
  const server = await serverForTest(t, ARGS);
  const { room } = await roomWith(server, t, 6);
  await server.kill();
  const again = await server.restartInTest(ARGS);
  const a = await user(again, t);
  await a.join(room);
  for (let i = 7; i <= 9; i++) assert.equal((await a.say(room, `m${i}`)).seq, i);
  const r = await replay(await user(again, t), room, 3);
  assert.deepEqual(r.events.map((m) => [m.seq, m.text]), [4, 5, 6, 7, 8, 9].map((s) => [s, `m${s}`]));
  const r2 = await replay(await user(again, t), room, 1);
  assert.deepEqual(r2.events.map((m) => m.seq), [2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(await reads(again), { pages: 0, seeds: 1 });
});

test('after a restart: an edit, delete or reaction stored after the seed is replayed in its new form', async (t) => {
  const server = await serverForTest(t, ARGS);
  const { a, room } = await roomWith(server, t, 6);
  await a.request({ type: 'react', room, seq: 2, emoji: '👍' }); // 7
  await server.kill();
  const again = await server.restartInTest(ARGS);
  const first = await replay(await user(again, t), room, 1); // seeds the ring
  assert.deepEqual(first.events.map((m) => m.seq), [2, 3, 4, 5, 6, 7]);
  assert.equal(first.events[1].text, 'm3');

  const a2 = await user(again, t);
  await a2.join(room);
  const b = await user(again, t);
  await b.join(room);
  await a2.say(room, 'm8'); // 8
  const ed = await loginAs(again, t, a); // the author of 1..6, on the new process
  await ed.join(room);
  await ed.request({ type: 'edit', room, seq: 3, text: 'm3 edited' }); // 9
  await ed.request({ type: 'delete', room, seq: 4 }); // 10
  await b.request({ type: 'react', room, seq: 5, emoji: '🙂' }); // 11
  await ed.request({ type: 'delete', room, seq: 2 }); // 12: erases the reaction at 7 too

  const r = await replay(await user(again, t), room, 1);
  const ts = r.events.map((m) => m.ts);
  assert.deepEqual(r.events, [
    { type: 'message', room, seq: 2, ts: ts[0], from: a.name, deleted: true },
    { type: 'message', room, seq: 3, ts: ts[1], from: a.name, text: 'm3 edited' },
    { type: 'message', room, seq: 4, ts: ts[2], from: a.name, deleted: true },
    { type: 'message', room, seq: 5, ts: ts[3], from: a.name, text: 'm5' },
    { type: 'message', room, seq: 6, ts: ts[4], from: a.name, text: 'm6' },
    { type: 'reaction', room, seq: 7, ts: ts[5], from: a.name, target: 2, deleted: true },
    { type: 'message', room, seq: 8, ts: ts[6], from: a2.name, text: 'm8' },
    { type: 'edit', room, seq: 9, ts: ts[7], from: a.name, target: 3 },
    { type: 'delete', room, seq: 10, ts: ts[8], from: a.name, target: 4 },
    { type: 'reaction', room, seq: 11, ts: ts[9], from: b.name, target: 5, emoji: '🙂', on: true },
    { type: 'delete', room, seq: 12, ts: ts[10], from: a.name, target: 2 },
  ]);
  // The same as a replay read from the store alone: a fresh process, then a join from 0 that
  // reaches below any page it seeds with.
  await again.kill();
  const third = await server.restartInTest([...ARGS, '--ring-size', '1']);
  const fromStore = await replay(await user(third, t), room, 1);
  assert.deepEqual(fromStore.events, r.events);
  assert.equal((await reads(third)).pages, 1);
});

test('after a restart: many joins at once each get their exact replay, from one read', async (t) => {
  const server = await serverForTest(t, ARGS);
  const { room } = await roomWith(server, t, 40);
  const whole = (await replay(await user(server, t), room, 0)).events;
  await server.kill();
  const again = await server.restartInTest(ARGS);
  const clients = [];
  for (let i = 0; i < 30; i++) clients.push(await user(again, t));
  const sinces = clients.map((_, i) => 39 - (i % 10) * 3); // 39, 36, ... 12, each 3 times
  const got = await Promise.all(clients.map((c, i) => replay(c, room, sinces[i])));
  got.forEach((r, i) => {
    assert.equal(r.joined.seq, 40);
    assert.deepEqual(r.events, whole.slice(sinces[i]), `the replay of since ${sinces[i]}`);
  });
  assert.deepEqual(await reads(again), { pages: 0, seeds: 1 });
});

test('after a restart: joins racing an edit each see the edit with the text it left', async (t) => {
  const server = await serverForTest(t, ARGS);
  const { a, room } = await roomWith(server, t, 6);
  await server.kill();
  const again = await server.restartInTest(ARGS);
  const ed = await loginAs(again, t, a);
  await ed.join(room);
  const clients = [];
  for (let i = 0; i < 20; i++) clients.push(await user(again, t));
  // The joins (and so the seed read) and the edit go at once; whichever way they fall, a replay
  // that holds the edit shows the new text, and one that does not is followed by the edit live.
  const edited = ed.request({ type: 'edit', room, seq: 3, text: 'm3 edited' });
  const got = await Promise.all(clients.map((c) => replay(c, room, 1)));
  assert.equal((await edited).seq, 7);
  for (const [i, r] of got.entries()) {
    const m3 = r.events.find((m) => m.seq === 3);
    if (r.joined.seq === 7) {
      assert.equal(m3.text, 'm3 edited', `client ${i}: its replay holds the edit`);
      assert.deepEqual(r.events.at(-1), { type: 'edit', room, seq: 7, ts: r.events.at(-1).ts, from: a.name, target: 3 });
    } else {
      assert.equal(r.joined.seq, 6);
      const live = await clients[i].next((m) => m.room === room && m.seq === 7);
      assert.equal(live.text, 'm3 edited');
      if (m3.text !== 'm3 edited') assert.equal(m3.text, 'm3');
    }
  }
  const late = await replay(await user(again, t), room, 1);
  assert.equal(late.events.find((m) => m.seq === 3).text, 'm3 edited');
});

test('after a restart: a replay deeper than the ring can hold reads the store as before', async (t) => {
  const args = [...ARGS, '--ring-size', '4'];
  const server = await serverForTest(t, args);
  const { room } = await roomWith(server, t, 10);
  await server.kill();
  const again = await server.restartInTest(args);
  const deep = await replay(await user(again, t), room, 2);
  assert.deepEqual(deep.events.map((m) => m.text), [3, 4, 5, 6, 7, 8, 9, 10].map((s) => `m${s}`));
  assert.deepEqual(await reads(again), { pages: 1, seeds: 0 });
  const near = await replay(await user(again, t), room, 7);
  assert.deepEqual(near.events, deep.events.slice(5));
  const nearer = await replay(await user(again, t), room, 8);
  assert.deepEqual(nearer.events, deep.events.slice(6));
  assert.deepEqual(await reads(again), { pages: 1, seeds: 1 });
});

// Another connection of c's account on server.
async function loginAs(server, t, c) {
  const x = await connect(server, t, { label: `${c.label} again` });
  await x.login(c.name, c.password);
  return x;
}
