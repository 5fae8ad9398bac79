// A store that notices damage: a data directory that lost its database is refused, quick_check
// refuses a damaged file at start, rows damaged on disk are repaired before anyone sees them, and
// a database deleted or replaced under the running server takes no acknowledged write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { serverForTest, sqliteOnly } from './lib/server.mjs';
import { get } from '../blackbox/lib/http.mjs';
import { runParley } from '../blackbox/lib/server.mjs';
import { assertError, connect, eventually, ms, uniqRoom, user } from './lib/chat.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import { telnetLogin } from './lib/telnet.mjs';

const dbOf = (server) => path.join(server.dataDir, 'parley.db');

// Runs parley on dataDir until it exits by itself (it should refuse to start).
function startOn(dataDir, extra = []) {
  return runParley(['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', dataDir, '--password-cost', 'min', ...extra]);
}

// A server that stored a few messages in `room`, then stopped cleanly (its WAL checkpointed).
async function storedThenStopped(t, count = 3) {
  const server = await serverForTest(t, ['--rate-limit', '0']);
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.sayMany(room, count, (k) => `message ${k}`);
  u.terminate();
  await server.stop();
  return { server, room, name: u.name };
}

test('a data directory whose database went missing or empty refuses to start (exit 2); without the marker it starts afresh', { skip: sqliteOnly }, async (t) => {
  const { server } = await storedThenStopped(t);
  const marker = path.join(server.dataDir, 'store.marker');
  assert.ok(existsSync(marker), 'no marker beside the database');
  const saved = `${dbOf(server)}.saved`;
  copyFileSync(dbOf(server), saved);

  rmSync(dbOf(server));
  let r = await startOn(server.dataDir);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /msg=store_missing .*database file is missing.*store\.marker/);
  assert.ok(!existsSync(dbOf(server)), 'a refused start created a fresh database');

  writeFileSync(dbOf(server), '');
  r = await startOn(server.dataDir);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /msg=store_missing .*database file is empty/);

  // Restored from the backup: it starts with everything.
  renameSync(saved, dbOf(server));
  const back = await server.restartInTest();
  const again = await user(back, t);
  assert.equal((await again.expect({ type: 'rooms' }, 'rooms')).type, 'rooms');
  await back.stop();

  // Deleting the marker is how an operator says "start afresh".
  rmSync(dbOf(server));
  rmSync(marker);
  const fresh = await server.restartInTest();
  assert.ok(existsSync(marker), 'the fresh store has no marker');
  await fresh.stop();
});

test('quick_check at start refuses a damaged database (exit 2); --db-check 0 skips it', { skip: sqliteOnly }, async (t) => {
  const { server } = await storedThenStopped(t, 400);
  const file = dbOf(server);
  // Scribble over one leaf page of the events table (1.0's messages) (dbstat says where they are): the file
  // still opens, and what the server reads at start (rooms, users) is intact.
  const leaves = execFileSync('sqlite3', [file, "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf'"])
    .toString().trim().split('\n').map(Number);
  assert.ok(leaves.length > 2, `only ${leaves.length} leaf pages`);
  const pageSize = Number(execFileSync('sqlite3', [file, 'PRAGMA page_size']).toString());
  const fd = openSync(file, 'r+');
  // Over the end of the page, where its cells' content lies (the middle may be free space).
  writeSync(fd, Buffer.alloc(200, 7), 0, 200, (leaves[leaves.length >> 1] - 1) * pageSize + pageSize - 300);
  closeSync(fd);
  const r = await startOn(server.dataDir);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /msg=store_damaged check=quick_check/);
  assert.match(r.stderr, /msg=store_damaged error=".*restore it from a backup/);
  // The operator can still start it to rescue what is readable.
  const skipped = await server.restartInTest(['--db-check', '0']);
  assert.ok(!skipped.logLines().some((l) => l.fields.msg === 'store_damaged'));
  await skipped.stop();
});

test('a row damaged on disk is repaired before it is sent: U+FFFD for bad bytes and controls, "?" for a bad sender', { skip: sqliteOnly }, async (t) => {
  const { server, room } = await storedThenStopped(t, 3);
  // Invalid UTF-8 and an escape sequence in message 1's text; a sender that is not a name in 2.
  execFileSync('sqlite3', [dbOf(server),
    `UPDATE events SET text = CAST(X'6F6BFF1B5B324A' AS TEXT) WHERE room = '${room}' AND seq = 1;` +
    `UPDATE events SET sender = CAST(X'6576C3696C' AS TEXT) WHERE room = '${room}' AND seq = 2;`]);
  const back = await server.restartInTest();
  const u = await user(back, t);
  const h = await u.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.from === '?' ? '?' : 'name', m.text]),
    [[1, 'name', 'ok\ufffd\ufffd[2J'], [2, '?', 'message 2'], [3, 'name', 'message 3']]);
  // The replay of a join carries the same repaired rows.
  await u.join(room, 0);
  const replay = await u.messages(room, 3);
  assert.equal(replay[0].text, 'ok\ufffd\ufffd[2J');
  assert.ok(back.logLines().some((l) => l.fields.msg === 'store_damaged_row'), 'the repair was not logged');
  // Telnet shows no escape sequence either.
  const c = await telnetLogin(back, t, `tn${Date.now() % 100000}`);
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`#${room}`));
  await c.send('/history 3');
  const line = await c.nextLine(/message 3/);
  const all = c.raw.map((b) => b.toString('latin1')).join('');
  assert.ok(!all.includes('\x1b'), 'an escape byte reached the terminal');
  assert.ok(line.includes('message 3'));
});

for (const [what, damage] of [
  ['deleted', (file) => rmSync(file)],
  ['replaced by a copy', (file) => { copyFileSync(file, `${file}.copy`); renameSync(`${file}.copy`, file); }],
  ['WAL deleted', (file) => rmSync(`${file}-wal`)],
]) {
  test(`database file ${what} under the running server: writes answer server_busy, nothing is acked, /healthz unhealthy, logged once a minute`, { skip: sqliteOnly }, async (t) => {
    const server = await serverForTest(t, ['--rate-limit', '0']);
    const u = await user(server, t);
    const reader = await user(server, t);
    const room = uniqRoom();
    await u.join(room);
    await reader.join(room);
    assert.equal((await u.say(room, 'before')).seq, 1);
    assert.equal((await get(server.httpPort, '/healthz')).status, 200);

    damage(dbOf(server));
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(await u.request({ type: 'send', room, text: `after ${i}`, cid: `a${i}` }));
    for (const r of replies) assertError(r, 'server_busy', r.id, 'a send into a store whose file is gone');
    // Registrations and guest logins write too: refused the same way.
    const c = await connect(server, t);
    const reg = await c.request({ type: 'register', name: `late${Date.now() % 100000}`, password: 'long-enough' });
    assertError(reg, 'server_busy', reg.id);

    const health = await get(server.httpPort, '/healthz');
    assert.equal(health.status, 503);
    const body = JSON.parse(health.body.toString());
    assert.equal(body.status, 'unhealthy');
    assert.match(body.problem, /database/);
    assert.equal(sum(await scrape(server), 'parley_store_healthy'), 0);
    // One log line for all of it, not one per batch.
    await server.waitForLog((l) => l.fields.msg === 'store_file_gone', ms(5000), 'msg=store_file_gone');
    assert.equal(server.logLines().filter((l) => l.fields.msg === 'store_file_gone').length, 1);
    assert.equal(server.logLines().filter((l) => l.fields.msg === 'batch_failed').length, 1);
    // The reader saw only the acked message; reads still work.
    const h = await reader.expect({ type: 'history', room }, 'history');
    assert.deepEqual(h.messages.map((m) => m.text), ['before']);
    assert.equal((await reader.request({ type: 'ping' })).type, 'pong');
  });
}
