// Store failures: a full database (--max-db-size), a database locked by another process, and a
// file that is not a database; on PostgreSQL, a room locked by another node and a lost
// connection. The request gets server_busy and the server a log line; nothing
// unacked is ever delivered or stored, nothing acked is lost, and the server keeps serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freshDataDir, pgAdmin, pgDatabase, pgSession, postgresOnly, serverForTest, sqliteOnly } from './lib/server.mjs';
import { assertError, assertSeqRun, connect, ms, uniqRoom, user, withTimeout } from './lib/chat.mjs';
import { runParley } from '../blackbox/lib/server.mjs';
import { scrape, sum } from './lib/metrics.mjs';


test('--max-db-size: a full database answers server_busy, stores nothing of the failed send, keeps serving', { skip: sqliteOnly }, async (t) => {
  const server = await serverForTest(t, ['--max-db-size', '262144', '--rate-limit', '0']);
  const writer = await user(server, t);
  const reader = await user(server, t);
  const room = uniqRoom();
  await writer.join(room);
  await reader.join(room);
  const text = 'x'.repeat(3900);
  const acked = [];
  let busy = null;
  for (let i = 0; i < 400 && !busy; i++) {
    const reply = await writer.request({ type: 'send', room, text: `${i} ${text}`, cid: `c${i}` });
    if (reply.type === 'ack') acked.push(reply.seq);
    else busy = reply;
  }
  assert.ok(busy, 'the database never filled up');
  assertError(busy, 'server_busy', busy.id, 'a send into a full database');
  await server.waitForLog((l) => l.fields.msg === 'batch_failed', ms(5000), 'msg=batch_failed');
  assert.ok(sum(await scrape(server), 'parley_engine_errors_total', { engine: 'sqlite' }) >= 1,
    'the full database is counted in parley_engine_errors_total{engine="sqlite"}');
  // Acks were contiguous seqs; the reader saw exactly those messages, nothing of the failed one.
  assert.deepEqual(acked, Array.from({ length: acked.length }, (_, i) => i + 1));
  const seen = await reader.messages(room, acked.length);
  assertSeqRun(seen, room, 1, acked.length, 'messages before the disk filled');
  const h = await reader.expect({ type: 'history', room, limit: 200 }, 'history');
  assert.ok(h.messages.every((m) => m.seq <= acked.length), 'a refused message was stored');
  // Every event is durable before its ack (protocol 1.1 rule 47): an edit that does not fit
  // is refused the same way, and nobody gets it.
  const edit = await writer.request({ type: 'edit', room, seq: 1, text: `edited ${text}` });
  assertError(edit, 'server_busy', edit.id, 'an edit into a full database');
  const h2 = await reader.expect({ type: 'history', room, limit: 1, before: 2 }, 'history');
  assert.ok(!('edited' in h2.messages[0]) && h2.messages[0].text.startsWith('0 '), 'a refused edit was stored');
  assert.deepEqual(reader.log.filter((m) => m.type === 'edit'), [], 'a refused edit was delivered');
  // Still serving: reads, pings and logins work.
  assert.equal((await writer.request({ type: 'ping' })).type, 'pong');
  const again = await connect(server, t);
  await again.loginToken(writer.token);
});

test('a database locked by another process → server_busy, then the same cid is stored once the lock goes', { skip: sqliteOnly }, async (t) => {
  const server = await serverForTest(t, []);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.say(room, 'before the lock');
  // A second writer (the sqlite3 shell) takes the write lock and holds it.
  const shell = spawn('sqlite3', [path.join(server.dataDir, 'parley.db')], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => shell.kill('SIGKILL'));
  let out = '';
  const locked = new Promise((resolve) => shell.stdout.on('data', (d) => { out += d; if (out.includes('locked')) resolve(); }));
  shell.stdin.write("BEGIN IMMEDIATE;\nSELECT 'locked';\n");
  await withTimeout(locked, ms(5000), 'the sqlite3 shell to take the lock');
  const busy = await u.request({ type: 'send', room, text: 'during the lock', cid: 'locked-1' }, { timeoutMs: ms(15000) });
  assertError(busy, 'server_busy', busy.id, 'a send while another process holds the write lock');
  shell.stdin.end('COMMIT;\n');
  await new Promise((resolve) => shell.on('exit', resolve));
  // The client retries with the same cid: stored once, as the next seq.
  const ack = await u.say(room, 'during the lock', { cid: 'locked-1' });
  assert.equal(ack.seq, 2);
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.text]), [[1, 'before the lock'], [2, 'during the lock']]);
});

test('a data file that is not a database: parley refuses to start, with a message, and no crash', async (t) => {
  const dir = freshDataDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'parley.db'), 'this is not a database, just some text '.repeat(200));
  const run = await runParley(['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', dir]);
  assert.equal(run.code, 2, `exit ${JSON.stringify(run)}`);
  assert.match(run.stderr, /level=error/);
  assert.equal(run.signal ?? null, null);
});

test('PostgreSQL: a room held by another node → server_busy (lock_timeout), then the same cid is stored once', { skip: postgresOnly }, async (t) => {
  const server = await serverForTest(t, []);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.say(room, 'before the lock');
  // Another node's batch: a session holding the room's row lock (store_pg.c's lock_room).
  const other = pgSession(server.dataDir);
  t.after(() => other.kill('SIGKILL'));
  let out = '';
  const locked = new Promise((resolve) => other.stdout.on('data', (d) => { out += d; if (out.includes('locked')) resolve(); }));
  other.stdin.write(`BEGIN;\nSELECT last_seq FROM rooms WHERE name = '${room}' FOR UPDATE;\nSELECT 'locked';\n`);
  await withTimeout(locked, ms(5000), 'the other session to take the room');
  const busy = await u.request({ type: 'send', room, text: 'during the lock', cid: 'locked-1' }, { timeoutMs: ms(15000) });
  assertError(busy, 'server_busy', busy.id, 'a send while another node holds the room');
  other.stdin.end('COMMIT;\n');
  await new Promise((resolve) => other.on('exit', resolve));
  const ack = await u.say(room, 'during the lock', { cid: 'locked-1' });
  assert.equal(ack.seq, 2);
  assert.equal((await u.request({ type: 'send', room, text: 'again', cid: 'locked-1' })).seq, 2, 'a second retry is acked with the first seq');
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.text]), [[1, 'before the lock'], [2, 'during the lock']]);
});

test('PostgreSQL: the store connection ended by the server → server_busy at most once, a retry by cid is stored once, the store reconnects', { skip: postgresOnly }, async (t) => {
  const server = await serverForTest(t, []);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.say(room, 'before');
  const ended = pgAdmin(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${pgDatabase(server.dataDir)}' AND application_name = 'parley'`);
  assert.equal(ended, '1');
  // The first write after it finds the connection gone (unless a read found it first, and the
  // store reconnected already): server_busy, which the client answers by retrying its cid.
  const first = await u.request({ type: 'send', room, text: 'after', cid: 'after-1' });
  if (first.type !== 'ack') {
    assertError(first, 'server_busy', first.id, 'the send that found the connection gone');
    await server.waitForLog((l) => l.fields.msg === 'store_error' && l.fields.backend === 'postgres', ms(5000), 'msg=store_error');
  }
  const ack = await u.say(room, 'after', { cid: 'after-1' });
  assert.equal(ack.seq, 2);
  await server.waitForLog((l) => l.fields.msg === 'store_reconnected' || first.type === 'ack', ms(5000), 'msg=store_reconnected');
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.text]), [[1, 'before'], [2, 'after']]);
  // The statement that found the connection gone is counted.
  assert.ok(sum(await scrape(server), 'parley_engine_errors_total', { engine: 'postgres' }) >= 1,
    'the lost connection is counted in parley_engine_errors_total{engine="postgres"}');
});
