// /metrics: Prometheus text with the chat counters, gauges and histograms, and they move.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { onPostgres, onRedis, startChatServer } from './lib/server.mjs';
import { PASSWORD, connect, eventually, guest, uniqRoom, user } from './lib/chat.mjs';
import { TelnetClient, telnetLogin } from './lib/telnet.mjs';
import { has, scrape, select, sum } from './lib/metrics.mjs';
import { EVENT_TIMEOUT } from '../blackbox/lib/util.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

const NAMES = [
  'parley_connections',
  'parley_logins_total',
  'parley_messages_accepted_total',
  'parley_deliveries_total',
  'parley_rate_limited_total',
  'parley_slow_consumers_total',
  'parley_socket_writes_total',
];

const wsSeries = (m) => select(m, 'parley_connections').filter((s) => /^(ws|websocket)$/.test(s.labels.transport));
const telnetSeries = (m) => select(m, 'parley_connections', { transport: 'telnet' });

// Polls /metrics until value(m) >= want (metrics may lag the replies), then returns the scrape.
async function scrapeUntil(value, want, what) {
  const deadline = Date.now() + EVENT_TIMEOUT;
  for (;;) {
    const m = await scrape(server);
    if (value(m) >= want || Date.now() > deadline) return m;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('/metrics is Prometheus text with every chat metric', async () => {
  const m = await scrape(server);
  assert.match(m.contentType, /^text\/plain/);
  for (const name of NAMES) assert.ok(has(m, name), `${name} missing`);
  assert.equal(m.types.parley_connections, 'gauge');
  for (const name of NAMES.slice(1)) assert.equal(m.types[name], 'counter', `# TYPE of ${name}`);
  for (const h of ['parley_store_commit_seconds', 'parley_store_batch_size']) {
    assert.equal(m.types[h], 'histogram', `# TYPE of ${h}`);
    assert.ok(has(m, `${h}_bucket`), `${h}_bucket missing`);
    assert.ok(has(m, `${h}_sum`), `${h}_sum missing`);
    assert.ok(has(m, `${h}_count`), `${h}_count missing`);
    assert.ok(select(m, `${h}_bucket`, { le: '+Inf' }).length === 1, `${h} has no le="+Inf" bucket`);
  }
  assert.equal(wsSeries(m).length, 1, 'no parley_connections{transport="websocket"} (or "ws")');
  assert.equal(telnetSeries(m).length, 1, 'no parley_connections{transport="telnet"}');
  assert.ok(select(m, 'parley_errors_total').every((s) => typeof s.labels.code === 'string'));
});

test('parley_connections counts WebSocket and telnet connections by transport', async (t) => {
  const m0 = await scrape(server);
  const ws0 = wsSeries(m0)[0].value;
  const tel0 = telnetSeries(m0)[0].value;
  const a = await connect(server, t);
  const b = await connect(server, t);
  const tel = await TelnetClient.connect(server, 'metrics');
  t.after(() => tel.destroy());
  await tel.waitPrompt();
  const m1 = await scrape(server);
  assert.equal(wsSeries(m1)[0].value - ws0, 2);
  assert.equal(telnetSeries(m1)[0].value - tel0, 1);
  await a.close();
  await b.close();
  tel.destroy();
  const deadline = Date.now() + EVENT_TIMEOUT;
  let m2;
  do {
    m2 = await scrape(server);
  } while ((wsSeries(m2)[0].value !== ws0 || telnetSeries(m2)[0].value !== tel0) && Date.now() < deadline);
  assert.equal(wsSeries(m2)[0].value, ws0, 'websocket gauge did not go back down');
  assert.equal(telnetSeries(m2)[0].value, tel0, 'telnet gauge did not go back down');
});

test('parley_logins_total counts successful logins (password, guest, token, telnet)', async (t) => {
  const u = await user(server, t); // one password login
  const before = sum(await scrape(server), 'parley_logins_total');
  await guest(server, t);
  const c = await connect(server, t);
  await c.loginToken(u.token);
  const d = await connect(server, t);
  await d.login(u.name, PASSWORD);
  await telnetLogin(server, t, `telm${Date.now() % 100000}`);
  // A failed login is not a login.
  await (await connect(server, t)).expectError({ type: 'login', name: u.name, password: 'wrong-password' }, 'bad_credentials');
  const m = await scrapeUntil((x) => sum(x, 'parley_logins_total'), before + 4, 'logins');
  assert.equal(sum(m, 'parley_logins_total') - before, 4);
});

test('parley_messages_accepted_total grows by exactly the acked sends; deliveries and store histograms move', async (t) => {
  const room = uniqRoom();
  const a = await user(server, t);
  const b = await user(server, t);
  const c = await user(server, t);
  for (const x of [a, b, c]) await x.join(room);
  const m0 = await scrape(server);
  const K = 12;
  await Promise.all(Array.from({ length: K }, (_, i) => a.say(room, `metric ${i}`)));
  // Rejected sends are not accepted messages.
  await a.expectError({ type: 'send', room, text: '' }, 'bad_request');
  await a.expectError({ type: 'send', room: uniqRoom(), text: 'x' }, 'not_member');
  for (const x of [a, b, c]) await x.messages(room, K);
  const accepted = (m) => sum(m, 'parley_messages_accepted_total');
  const m1 = await scrapeUntil(accepted, accepted(m0) + K, 'accepted');
  assert.equal(accepted(m1) - accepted(m0), K, 'parley_messages_accepted_total');
  const m2 = await scrapeUntil((m) => sum(m, 'parley_deliveries_total'), sum(m0, 'parley_deliveries_total') + 3 * K, 'deliveries');
  assert.ok(
    sum(m2, 'parley_deliveries_total') - sum(m0, 'parley_deliveries_total') >= 3 * K,
    'parley_deliveries_total grew by less than messages x members',
  );
  const count = (m, h) => sum(m, `${h}_count`);
  assert.ok(count(m2, 'parley_store_commit_seconds') > count(m0, 'parley_store_commit_seconds'), 'no store commit counted');
  assert.ok(count(m2, 'parley_store_batch_size') > count(m0, 'parley_store_batch_size'), 'no store batch counted');
  assert.ok(
    sum(m2, 'parley_store_batch_size_sum') - sum(m0, 'parley_store_batch_size_sum') >= K,
    'store batch sizes add up to fewer than the messages stored',
  );
  for (const h of ['parley_store_commit_seconds', 'parley_store_batch_size']) {
    const buckets = select(m2, `${h}_bucket`).map((s) => ({ le: Number(s.labels.le === '+Inf' ? Infinity : s.labels.le), v: s.value }));
    buckets.sort((x, y) => x.le - y.le);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].v >= buckets[i - 1].v, `${h} buckets are not cumulative`);
    assert.equal(buckets.at(-1).v, count(m2, h), `${h} +Inf bucket != _count`);
    assert.ok(sum(m2, `${h}_sum`) >= 0);
  }
});

test('parley_errors_total{code} counts error replies by code', async (t) => {
  const c = await connect(server, t);
  const m0 = await scrape(server);
  await c.sendText('nope');
  await c.next((m) => m.type === 'error');
  await c.expectError({ type: 'join', room: 'general' }, 'not_logged_in');
  await c.expectError({ type: 'join', room: 'general' }, 'not_logged_in');
  await c.expectError({ type: 'login', name: 'bad name' }, 'bad_name');
  const errs = (m, code) => sum(m, 'parley_errors_total', { code });
  const m1 = await scrapeUntil((m) => errs(m, 'bad_name'), errs(m0, 'bad_name') + 1, 'errors');
  assert.equal(errs(m1, 'bad_json') - errs(m0, 'bad_json'), 1, 'bad_json');
  assert.equal(errs(m1, 'not_logged_in') - errs(m0, 'not_logged_in'), 2, 'not_logged_in');
  assert.equal(errs(m1, 'bad_name') - errs(m0, 'bad_name'), 1, 'bad_name');
});

test('parley_rate_limited_total counts rate_limited replies', async (t) => {
  const own = await startChatServer(['--rate-limit', '3']);
  t.after(() => own.dispose());
  const u = await user(own, t);
  const room = uniqRoom();
  await u.join(room);
  const before = sum(await scrape(own), 'parley_rate_limited_total');
  const replies = await Promise.all(Array.from({ length: 7 }, (_, i) => u.request({ type: 'send', room, text: `r${i}` })));
  const limited = replies.filter((r) => r.code === 'rate_limited').length;
  assert.equal(limited, 4);
  let after;
  const deadline = Date.now() + EVENT_TIMEOUT;
  do {
    after = sum(await scrape(own), 'parley_rate_limited_total');
  } while (after - before < limited && Date.now() < deadline);
  assert.equal(after - before, limited);
  assert.equal(sum(await scrape(own), 'parley_errors_total', { code: 'rate_limited' }), limited);
});

test('password checks: throttled logins by reason, the hasher queue, hashes in progress and the wait', async (t) => {
  const m = await scrape(server);
  assert.equal(m.types.parley_logins_throttled_total, 'counter');
  for (const reason of ['address', 'account', 'queue']) {
    assert.equal(select(m, 'parley_logins_throttled_total', { reason }).length, 1, `reason="${reason}" missing`);
  }
  assert.equal(m.types.parley_auth_hashes_total, 'counter');
  for (const g of ['parley_auth_queue_length', 'parley_auth_hashes_in_progress', 'parley_auth_hashes_in_progress_max']) {
    assert.equal(m.types[g], 'gauge', `# TYPE of ${g}`);
  }
  assert.equal(m.types.parley_auth_wait_seconds, 'histogram');
  assert.equal(select(m, 'parley_auth_wait_seconds_bucket', { le: '+Inf' }).length, 1);
  // A registration is hashed: the counters move.
  const before = sum(m, 'parley_auth_wait_seconds_count');
  const hashed = sum(m, 'parley_auth_hashes_total');
  await user(server, t);
  const after = await scrapeUntil((x) => sum(x, 'parley_auth_hashes_total'), hashed + 2, 'two hashes');
  assert.equal(sum(after, 'parley_auth_hashes_total'), hashed + 2, 'a registration and a login');
  assert.equal(sum(after, 'parley_auth_wait_seconds_count'), before + 2);
  assert.ok(sum(after, 'parley_auth_hashes_in_progress_max') >= 1);
});

// Messages that reach a connection together leave in one write, not one write each: K sends
// reach the server while it is stopped (SIGSTOP), so it reads them in one go, stores them in one
// commit and delivers them to both members in one turn.
test('parley_socket_writes_total: messages delivered together leave in one write per connection', async (t) => {
  const room = uniqRoom('coalesce');
  const a = await user(server, t);
  const b = await user(server, t);
  for (const x of [a, b]) await x.join(room);
  const K = 40;
  const writes = (m) => sum(m, 'parley_socket_writes_total');
  const deliveries = (m) => sum(m, 'parley_deliveries_total');
  const m0 = await scrape(server);
  const state = () => readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1][0];
  server.proc.kill('SIGSTOP');
  t.after(() => server.proc.kill('SIGCONT'));
  let acks;
  try {
    await eventually(() => state() === 'T', EVENT_TIMEOUT, 'the server to stop');
    acks = Array.from({ length: K }, (_, i) => a.say(room, `together ${i}`));
    await eventually(() => a.ws.bufferedAmount === 0, EVENT_TIMEOUT, 'the sends to be in the socket');
  } finally {
    server.proc.kill('SIGCONT');
  }
  await Promise.all(acks);
  for (const x of [a, b]) await x.messages(room, K);
  const m1 = await scrapeUntil(deliveries, deliveries(m0) + 2 * K, 'deliveries');
  assert.ok(deliveries(m1) - deliveries(m0) >= 2 * K, 'fewer deliveries than messages x members');
  const w = writes(m1) - writes(m0);
  assert.ok(w > 0, 'no socket write counted');
  // One write per message per member would be 2K (3K with the acks), besides the scrapes' own.
  assert.ok(w < K, `${w} socket writes for ${2 * K} deliveries and ${K} acks`);
});

test('per-engine latencies and errors: the store\'s batches (and Redis\'s commands with --broker) are timed', async (t) => {
  const store = onPostgres ? 'postgres' : 'sqlite';
  const ops = [[store, 'batch'], ...(onRedis ? [['redis', 'publish'], ['redis', 'lease'], ['redis', 'command']] : [])];
  const count = (m, engine, op) => sum(m, 'parley_engine_seconds_count', { engine, op });
  const before = await scrape(server);
  assert.equal(before.types.parley_engine_seconds, 'histogram');
  assert.equal(before.types.parley_engine_errors_total, 'counter');
  for (const [engine, op] of ops) {
    assert.equal(select(before, 'parley_engine_seconds_bucket', { engine, op, le: '+Inf' }).length, 1, `no ${engine} ${op} histogram`);
    assert.equal(select(before, 'parley_engine_seconds_sum', { engine, op }).length, 1, `no ${engine} ${op} sum`);
  }
  assert.equal(select(before, 'parley_engine_errors_total', { engine: store }).length, 1, `no ${store} error counter`);
  assert.equal(select(before, 'parley_engine_errors_total', { engine: 'redis' }).length, onRedis ? 1 : 0);
  assert.equal(select(before, 'parley_engine_seconds_count', { engine: onPostgres ? 'sqlite' : 'postgres' }).length, 0,
    'only the store in use is listed');

  const room = uniqRoom();
  const alice = await user(server, t);
  await alice.join(room);
  await alice.say(room, 'timed');
  const grown = (m, engine, op) => count(m, engine, op) - count(before, engine, op);
  const after = await scrapeUntil((m) => Math.min(grown(m, store, 'batch'), onRedis ? grown(m, 'redis', 'publish') : 1), 1);
  assert.ok(count(after, store, 'batch') > count(before, store, 'batch'), `${store} batches not counted`);
  if (onRedis) assert.ok(count(after, 'redis', 'publish') > count(before, 'redis', 'publish'), 'the publish not counted');
  for (const [engine, op] of ops) {
    const inf = select(after, 'parley_engine_seconds_bucket', { engine, op, le: '+Inf' })[0].value;
    assert.equal(inf, count(after, engine, op), `${engine} ${op}: le="+Inf" is the count`);
  }
});
