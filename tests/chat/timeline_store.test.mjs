// The timeline and the store: a 1.0 database opened by this server keeps its history (schema
// migration), erasure really removes texts from the files (rules 52, 53), the edit window,
// --max-reactions, the send and react buckets (rule 73), and retention with events (rule 47).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshDataDir, sqliteOnly, startChatServer } from './lib/server.mjs';
import { PASSWORD, connect, guest, uniq, uniqRoom, user } from './lib/chat.mjs';

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'store-v1.db');

// A server on a copy of the 1.0 database: room dev holds alice's "hello @bob" (cid a1), bob's
// "hi alice", the guest carol's "guest says hi" (cid a1) and bob's "fourth" (cid b4); alice
// sent bob "secret dm" (cid d1). alice and bob are registered with PASSWORD.
async function fromFixture(t, args = []) {
  const dataDir = freshDataDir();
  copyFileSync(fixture, path.join(dataDir, 'parley.db'));
  const server = await startChatServer(['--rate-limit', '0', ...args], { dataDir });
  t.after(() => server.dispose());
  return server;
}

async function login(server, t, name) {
  const c = await connect(server, t);
  await c.login(name, PASSWORD);
  return c;
}

test('a 1.0 database opens with its history, cids and authors; new events go on from its seqs', { skip: sqliteOnly }, async (t) => {
  const server = await fromFixture(t);
  const alice = await login(server, t, 'alice');
  const bob = await login(server, t, 'bob');
  await alice.join('dev');
  await bob.join('dev');
  const h = await alice.expect({ type: 'history', room: 'dev' }, 'history');
  assert.deepEqual(
    h.messages.map((m) => [m.seq, m.from, m.text, m.cid]),
    [[1, 'alice', 'hello @bob', 'a1'], [2, 'bob', 'hi alice', undefined], [3, 'carol', 'guest says hi', 'a1'], [4, 'bob', 'fourth', 'b4']],
  );
  assert.ok(!('mentions' in h.messages[0]), 'mentions are computed when stored, not read into old messages');
  // The cids of 1.0 messages are still taken, each by its own sender.
  assert.equal((await alice.request({ type: 'send', room: 'dev', text: 'retry', cid: 'a1' })).seq, 1);
  assert.equal((await bob.request({ type: 'react', room: 'dev', seq: 1, emoji: 'x', cid: 'b4' })).seq, 4);
  // Authors: bob edits his, nobody edits the old guest's (its session is unknown: no author).
  assert.equal((await bob.request({ type: 'edit', room: 'dev', seq: 2, text: 'hi alice!' })).seq, 5);
  await alice.expectError({ type: 'edit', room: 'dev', seq: 2, text: 'x' }, 'forbidden');
  const carol = await guest(server, t, 'carol');
  await carol.join('dev');
  await carol.expectError({ type: 'edit', room: 'dev', seq: 3, text: 'mine?' }, 'forbidden');
  await carol.expectError({ type: 'delete', room: 'dev', seq: 3 }, 'forbidden');
  // The dm room: alice's message is hers.
  assert.equal((await alice.request({ type: 'edit', room: 'dm:alice:bob', seq: 1, text: 'less secret' })).seq, 2);
  // And all of it survives a restart on the migrated database.
  await server.stop();
  const again = await server.restart();
  t.after(() => again.kill());
  const c = await login(again, t, 'bob');
  const joined = await c.join('dev', 0);
  assert.equal(joined.seq, 5);
  const replay = [];
  for (let i = 0; i < 5; i++) replay.push(await c.next((m) => m.room === 'dev' && m.seq !== undefined));
  assert.deepEqual(replay.map((m) => [m.seq, m.type, m.text]), [
    [1, 'message', 'hello @bob'], [2, 'message', 'hi alice!'], [3, 'message', 'guest says hi'], [4, 'message', 'fourth'], [5, 'edit', undefined],
  ]);
});

test('--edit-window: an older message → edit_window, after not_found and rights; 0 = always', { skip: sqliteOnly }, async (t) => {
  const server = await fromFixture(t, ['--edit-window', '1']);
  const alice = await login(server, t, 'alice');
  const bob = await login(server, t, 'bob');
  await alice.join('dev');
  await bob.join('dev');
  await alice.expectError({ type: 'edit', room: 'dev', seq: 1, text: 'too late' }, 'edit_window');
  await bob.expectError({ type: 'edit', room: 'dev', seq: 1, text: 'not mine' }, 'forbidden');
  await alice.expectError({ type: 'edit', room: 'dev', seq: 9, text: 'none' }, 'not_found');
  assert.equal((await alice.request({ type: 'delete', room: 'dev', seq: 1 })).type, 'ack', 'deleting has no time limit');
  await server.stop();
  const always = await server.restart(['--rate-limit', '0', '--edit-window', '0']);
  t.after(() => always.kill());
  const b2 = await login(always, t, 'bob');
  await b2.join('dev');
  assert.equal((await b2.request({ type: 'edit', room: 'dev', seq: 2, text: 'any time' })).type, 'ack');
});

// Every byte of the data directory's files, as one latin1 string (to search for UTF-8 texts).
function dataBytes(dir) {
  return readdirSync(dir)
    .map((f) => readFileSync(path.join(dir, f)).toString('latin1'))
    .join('\n');
}

test('erasure: a deleted message\'s text, its edits\' texts and a superseded text are gone from the files', { skip: sqliteOnly }, async (t) => {
  const server = await startChatServer(['--rate-limit', '0']);
  t.after(() => server.dispose());
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const secret = `Secret-${uniq('s')}`;
  await a.say(room, `${secret}-original`); // 1, then edited and deleted
  await a.request({ type: 'edit', room, seq: 1, text: `${secret}-edited` });
  await a.request({ type: 'react', room, seq: 1, emoji: `E${secret.slice(-6)}` });
  await a.request({ type: 'delete', room, seq: 1 });
  await a.say(room, `${secret}-superseded`); // 5, then edited
  await a.request({ type: 'edit', room, seq: 5, text: `${secret}-current` });
  await server.stop();
  const bytes = dataBytes(server.dataDir);
  assert.ok(bytes.includes(`${secret}-current`), 'the current text is stored (the search below can find texts)');
  for (const gone of [`${secret}-original`, `${secret}-edited`, `${secret}-superseded`, `E${secret.slice(-6)}`]) {
    assert.ok(!bytes.includes(gone), `${gone} is still in the data files`);
  }
});

test('--max-reactions: a new emoji beyond N distinct → too_many_reactions; held ones can still be added', async (t) => {
  const server = await startChatServer(['--rate-limit', '0', '--max-reactions', '2']);
  t.after(() => server.dispose());
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  await a.say(room, 'react to me');
  await a.request({ type: 'react', room, seq: 1, emoji: 'one' });
  await a.request({ type: 'react', room, seq: 1, emoji: 'two' });
  await b.expectError({ type: 'react', room, seq: 1, emoji: 'three' }, 'too_many_reactions');
  assert.equal((await b.request({ type: 'react', room, seq: 1, emoji: 'two' })).seq, 4);
  assert.equal((await b.request({ type: 'react', room, seq: 1, emoji: 'three', on: false })).seq, 1);
  await a.request({ type: 'react', room, seq: 1, emoji: 'one', on: false });
  assert.equal((await b.request({ type: 'react', room, seq: 1, emoji: 'three' })).seq, 6);
});

test('rule 73: edit and delete use the send bucket, react its own; errors, duplicates and no-ops take no token', async (t) => {
  // One token each, refilled over 10 s: a test that runs in far less sees them empty once used.
  const server = await startChatServer(['--rate-limit', '1', '--react-rate', '1']);
  t.after(() => server.dispose());
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  assert.equal((await a.request({ type: 'send', room, text: 'one', cid: 'c1' })).seq, 1); // the send token
  await a.expectError({ type: 'edit', room, seq: 1, text: 'x' }, 'rate_limited');
  await a.expectError({ type: 'delete', room, seq: 1 }, 'rate_limited');
  await a.expectError({ type: 'edit', room, seq: 7, text: 'x' }, 'not_found'); // ranked before
  await a.expectError({ type: 'send', room, text: 'x', reply_to: 7 }, 'not_found');
  assert.equal((await a.request({ type: 'edit', room, seq: 9, text: 'x', cid: 'c1' })).seq, 1); // a duplicate
  assert.equal((await a.request({ type: 'react', room, seq: 1, emoji: 'a' })).seq, 2); // the react token
  assert.equal((await a.request({ type: 'react', room, seq: 1, emoji: 'a' })).seq, 1); // no-op, no token
  assert.equal((await a.request({ type: 'react', room, seq: 1, emoji: 'b', on: false })).seq, 1);
  await a.expectError({ type: 'react', room, seq: 1, emoji: 'b' }, 'rate_limited');
  await a.expectError({ type: 'react', room, seq: 1, emoji: 'bad emoji' }, 'bad_request');
});

test('rule 73: more than 10 × --react-rate react requests in 10 s close the connection (1008); sends are not counted', async (t) => {
  const server = await startChatServer(['--rate-limit', '100', '--react-rate', '1']);
  t.after(() => server.dispose());
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'react to me');
  for (let i = 0; i < 20; i++) await a.say(room, `not a react ${i}`); // the send bucket's, not counted here
  // Ten react requests of any answer are within 10 × 1; the eleventh closes.
  for (let i = 0; i < 10; i++) {
    const r = await a.request({ type: 'react', room, seq: 1, emoji: i % 2 ? 'a' : 'bad emoji' });
    assert.ok(r.type === 'ack' || r.type === 'error', JSON.stringify(r));
  }
  await a.send({ type: 'react', room, seq: 1, emoji: 'z' });
  const close = await a.waitClosed();
  assert.equal(close.code, 1008, JSON.stringify(close));
});

test('--retention N keeps the newest N messages and every event after the oldest kept one', async (t) => {
  const server = await startChatServer(['--rate-limit', '0', '--retention', '2']);
  t.after(() => server.dispose());
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await a.say(room, 'm1'); // 1
  await a.say(room, 'm2'); // 2
  await a.request({ type: 'react', room, seq: 2, emoji: 'r' }); // 3
  await a.request({ type: 'edit', room, seq: 2, text: 'm2!' }); // 4
  await a.request({ type: 'react', room, seq: 1, emoji: 'r' }); // 5
  await a.say(room, 'm3'); // 6: m1 leaves; m2 and every event after it stay
  await a.expectError({ type: 'edit', room, seq: 1, text: 'x' }, 'not_found');
  const h = await a.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.text]), [[2, 'm2!'], [6, 'm3']]);
  const c = await user(server, t);
  const joined = await c.join(room, 0);
  assert.equal(joined.truncated, true);
  const replay = [];
  for (let i = 0; i < 5; i++) replay.push(await c.next((m) => m.room === room && m.seq !== undefined));
  assert.deepEqual(replay.map((m) => [m.seq, m.type]), [[2, 'message'], [3, 'reaction'], [4, 'edit'], [5, 'reaction'], [6, 'message']]);
});
