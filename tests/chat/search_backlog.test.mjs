// The search index trails the commits (SQLite): a message waits in the store's backlog until a
// catch-up indexes it, after a quiet moment, at the backlog's bound, before any search, at a clean
// stop, or at the start after a crash. Whatever the index has caught up with, a search finds every
// message acknowledged before it, in its current form, or, when the catch-up cannot be written,
// answers server_busy rather than leave those messages out. PARLEY_TEST_SEARCH_QUIET_MS holds messages
// in the backlog (no quiet catch-up during a test). On PostgreSQL, which indexes in the batch,
// the same searches run and the backlog's metrics are not looked at.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { onPostgres, serverForTest, sqliteOnly } from './lib/server.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import { connect, eventually, uniqRoom, user } from './lib/chat.mjs';

const ARGS = ['--rate-limit', '0', '--search-rate', '0'];
const HOLD = { PARLEY_TEST_SEARCH_QUIET_MS: '600000' };

const word = (prefix = 'b') => `${prefix}${randomBytes(5).toString('hex')}`;

// A server for test t that keeps its backlog (env HOLD); restartInTest(args, { env }) follows it.
const holdingServer = (t, args = ARGS) => serverForTest(t, args, { env: HOLD });

async function backlog(server) {
  const m = await scrape(server);
  return { waiting: sum(m, 'parley_search_backlog'), catchUps: sum(m, 'parley_search_catch_ups_total') };
}

// Asserts the backlog's metrics (SQLite only: PostgreSQL has no backlog).
async function expectBacklog(server, want, what) {
  if (onPostgres) return;
  assert.deepEqual(await backlog(server), want, what);
}

// Another connection of c's account, on server.
async function loginAs(server, t, c) {
  const x = await connect(server, t, { label: `${c.label} again` });
  await x.login(c.name, c.password);
  return x;
}

// A user in a fresh room of server who sent n messages "<word> <i>" (i = 1..n), still waiting to
// be indexed (checked on SQLite); the results a search for the word must give, newest first.
async function sentAndWaiting(server, t, n) {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const acks = [];
  for (let i = 1; i <= n; i++) acks.push(await a.say(room, `${w} ${i}`));
  await expectBacklog(server, { waiting: n, catchUps: 0 }, `${n} messages wait`);
  const want = acks.map((ack, i) => `${room}/${ack.seq}:${w} ${i + 1}`).reverse();
  return { a, room, w, want };
}

const search = (c, q, extra = {}) => c.expect({ type: 'search', q, ...extra }, 'search');
const found = (r) => r.results.map((m) => `${m.room}/${m.seq}:${m.text}`);

test('a search finds the messages acked just before it, though none was indexed yet', async (t) => {
  const server = await holdingServer(t);
  const { a, room, w, want } = await sentAndWaiting(server, t, 3);
  assert.deepEqual(found(await search(a, w, { room })), want);
  await expectBacklog(server, { waiting: 0, catchUps: 1 }, 'the search caught the index up');
  // Indexed once: a second search finds the same, and catches nothing up.
  assert.deepEqual(found(await search(a, w, { room })), want);
  await expectBacklog(server, { waiting: 0, catchUps: 1 }, 'nothing left to catch up');
});

test('edits, deletes and retention trims of messages still waiting: the index takes them as they stand', async (t) => {
  const server = await holdingServer(t, [...ARGS, '--retention', '3']);
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const [old, neu, gone] = [word('old'), word('new'), word('gone')];
  const edited = await a.say(room, `first ${old}`);
  await a.expect({ type: 'edit', room, seq: edited.seq, text: `first ${neu}` }, 'ack');
  const deleted = await a.say(room, `second ${gone}`);
  await a.expect({ type: 'delete', room, seq: deleted.seq }, 'ack');
  await expectBacklog(server, { waiting: 2, catchUps: 0 }, 'both messages wait');
  assert.deepEqual(found(await search(a, old)), [], 'the words an edit replaced');
  assert.deepEqual(found(await search(a, neu)), [`${room}/${edited.seq}:first ${neu}`]);
  assert.deepEqual(found(await search(a, gone)), [], 'a deleted message');

  // Retention keeps 3 messages a room: of 5 waiting, the 2 trimmed are never indexed.
  const trimmed = uniqRoom();
  await a.join(trimmed);
  const ws = [1, 2, 3, 4, 5].map(() => word('t'));
  const acks = [];
  for (const w of ws) acks.push(await a.say(trimmed, w));
  for (const [i, w] of ws.entries()) {
    const want = i < 2 ? [] : [`${trimmed}/${acks[i].seq}:${w}`];
    assert.deepEqual(found(await search(a, w)), want, `message ${i + 1} of 5, retention 3`);
  }
});

test('kill -9 with messages waiting: the next start indexes them before any search', async (t) => {
  const server = await holdingServer(t);
  const { a, room, w, want } = await sentAndWaiting(server, t, 4);
  await server.kill();
  const again = await server.restartInTest(ARGS);
  if (!onPostgres) {
    await eventually(async () => (await backlog(again)).catchUps === 1, undefined, 'the start to catch up');
    await expectBacklog(again, { waiting: 0, catchUps: 1 }, 'caught up at the start');
  }
  const b = await loginAs(again, t, a);
  assert.deepEqual(found(await search(b, w, { room })), want);
});

test('a clean stop indexes what waits: the next start finds nothing to catch up', { skip: sqliteOnly }, async (t) => {
  const server = await holdingServer(t);
  const { a, room, w, want } = await sentAndWaiting(server, t, 3);
  await server.stop();
  const again = await server.restartInTest(ARGS, { env: HOLD });
  const b = await loginAs(again, t, a);
  assert.deepEqual(found(await search(b, w, { room })), want);
  await expectBacklog(again, { waiting: 0, catchUps: 0 }, 'nothing was left to index');
});

test('the backlog is caught up at its bound of 500, with no search and no quiet moment', { skip: sqliteOnly }, async (t) => {
  const server = await holdingServer(t);
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  await a.sayMany(room, 510, (k) => `${w} ${k}`);
  const { waiting, catchUps } = await backlog(server);
  assert.equal(catchUps, 1, 'one catch-up, in the batch that took the backlog to 500');
  assert.ok(waiting <= 10, `at most the 10 messages after the bound wait, not ${waiting}`);
  const r = await search(a, w, { room, limit: 100 });
  assert.equal(r.results.length, 100);
  assert.equal(r.results[0].text, `${w} 510`);
});

test('a catch-up that cannot be written: the search answers server_busy, and says why', { skip: sqliteOnly }, async (t) => {
  const server = await holdingServer(t);
  const { a, w } = await sentAndWaiting(server, t, 2);
  rmSync(path.join(server.dataDir, 'parley.db')); // the store refuses writes from now on
  const e = await a.expectError({ type: 'search', q: w }, 'server_busy');
  assert.match(e.message, /search is not available/);
  await expectBacklog(server, { waiting: 2, catchUps: 0 }, 'nothing was caught up');
});
