// The room timeline of protocol 1.1 (rules 46-57, 73, 75): one seq per room for every stored
// event; edit, delete, react, send with reply_to; mentions; history as current state; replay
// forms; erasure; the cid namespace shared by every event-storing request; error order.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { startChatServer } from './lib/server.mjs';
import { assertError, assertKeys, connect, dmRoom, eventually, guest, openRoom, uniq, uniqRoom, user } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

// Users a and b in a fresh room, with a's message at seq 1.
async function roomWithMessage(t, text = 'deploy the release on Friday') {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  const ack = await a.say(room, text);
  assert.equal(ack.seq, 1);
  await a.nextMessage(room);
  await b.nextMessage(room);
  return { a, b, room };
}

// The next event of `type` in `room`.
const nextEvent = (c, room, type) =>
  c.next((m) => m.type === type && m.room === room, undefined, `a ${type} event in ${room}`);

// Shows that no event of room reached c before a marker message sent now by `by`.
async function assertNoEventBefore(c, by, room) {
  const text = `marker ${uniq('m')}`;
  await by.say(room, text);
  const { before: earlier } = await c.until((m) => m.type === 'message' && m.text === text);
  const events = earlier.filter((m) => m.room === room && m.seq !== undefined);
  assert.deepEqual(events, [], `events arrived before the marker: ${JSON.stringify(events)}`);
}

test('hello lists edit, delete, react and reply, in the protocol order, and no unknown name', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/ws`);
  const hello = await new Promise((resolve, reject) => {
    ws.once('message', (d) => resolve(JSON.parse(d.toString())));
    ws.once('error', reject);
  });
  ws.terminate();
  const order = ['edit', 'delete', 'react', 'reply', 'topic', 'moderation', 'read', 'search', 'status', 'saved_rooms', 'large_rooms'];
  for (const f of ['edit', 'delete', 'react', 'reply']) assert.ok(hello.features.includes(f), `features ${hello.features}`);
  for (const f of hello.features) assert.ok(order.includes(f), `unknown feature ${f}`);
  const positions = hello.features.map((f) => order.indexOf(f));
  assert.deepEqual(positions, [...positions].sort((x, y) => x - y), `features out of order: ${hello.features}`);
});

test('send with reply_to: ack, and the message carries reply_to and mentions to everyone', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  const text = `yes @${b.name.toUpperCase()}, after the freeze`;
  const ack = await b.request({ type: 'send', id: 7, room, text, reply_to: 1 });
  assert.deepEqual(ack, { type: 'ack', id: 7, room, seq: 2 });
  for (const c of [a, b]) {
    const m = await c.nextMessage(room);
    assertKeys(m, ['type', 'room', 'seq', 'ts', 'from', 'text', 'reply_to', 'mentions'], 'reply');
    assert.equal(m.reply_to, 1);
    assert.deepEqual(m.mentions, [b.name]); // registered spelling
  }
  // Replies to replies are allowed: a plain pointer.
  assert.equal((await a.say(room, 'and a reply to the reply', { reply_to: 2 })).seq, 3);
});

test('mentions (rule 57): name boundaries, trailing dots, once each in order, online guests, no group mentions', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  const g = await guest(server, t);
  await g.join(room);
  const text = `@${g.name.toLowerCase()}: hi @${b.name}... and mail@${a.name} @room @here @${b.name} (@${a.name})`;
  await a.say(room, text);
  const m = await b.nextMessage(room);
  assert.deepEqual(m.mentions, [g.name, b.name, a.name]);
  await a.say(room, 'nobody here: @nosuchuser_zz and @');
  const plain = await b.nextMessage(room);
  assert.ok(!('mentions' in plain), `mentions present when empty: ${JSON.stringify(plain)}`);
});

test('edit: ack with a new seq, the edit event to the room; history then shows the current text', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  const ack = await a.request({ type: 'edit', id: 11, room, seq: 1, text: `deploy it @${b.name} ` });
  assert.deepEqual(ack, { type: 'ack', id: 11, room, seq: 2 });
  for (const c of [a, b]) {
    const e = await nextEvent(c, room, 'edit');
    assertKeys(e, ['type', 'room', 'seq', 'ts', 'from', 'target', 'text', 'mentions'], 'edit event');
    assert.deepEqual([e.seq, e.target, e.from, e.text, e.mentions], [2, 1, a.name, `deploy it @${b.name}`, [b.name]]);
  }
  // An unchanged text is stored too.
  assert.equal((await a.request({ type: 'edit', room, seq: 1, text: `deploy it @${b.name}` })).seq, 3);
  const h = await b.expect({ type: 'history', room }, 'history');
  assert.equal(h.messages.length, 1, 'history lists messages only');
  const [m] = h.messages;
  assertKeys(m, ['type', 'room', 'seq', 'ts', 'from', 'text', 'mentions', 'edited'], 'history entry');
  assert.equal(m.text, `deploy it @${b.name}`);
  assert.ok(Number.isInteger(m.edited) && m.edited >= m.ts);
});

test('edit errors: not the author → forbidden; unknown, non-message or deleted seq → not_found; fields checked', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  await b.expectError({ type: 'edit', room, seq: 1, text: 'mine now' }, 'forbidden');
  await a.expectError({ type: 'edit', room, seq: 99, text: 'x' }, 'not_found');
  await a.expectError({ type: 'edit', room, seq: 0, text: 'x' }, 'not_found');
  const edit = await a.request({ type: 'edit', room, seq: 1, text: 'v2' });
  await a.expectError({ type: 'edit', room, seq: edit.seq, text: 'an edit is no message' }, 'not_found');
  await a.expectError({ type: 'edit', room, seq: 1, text: '   ' }, 'bad_request');
  await a.expectError({ type: 'edit', room, seq: 1, text: 'bell\u0007' }, 'bad_request');
  await a.expectError({ type: 'edit', room, seq: 1, text: 'x'.repeat(4001) }, 'too_long');
  await a.expectError({ type: 'edit', room, text: 'no seq' }, 'bad_request');
  await a.expectError({ type: 'edit', room, seq: 1 }, 'bad_request');
  await a.expectError({ type: 'edit', room, seq: 1, text: 'x', cid: '' }, 'bad_request');
  await a.expectError({ type: 'edit', room: 'Bad Room!', seq: 1, text: 'x' }, 'bad_name');
  await a.expectError({ type: 'edit', room: uniqRoom(), seq: 1, text: 'x' }, 'not_member');
  await a.request({ type: 'delete', room, seq: 1 });
  const err = await a.expectError({ type: 'edit', id: 15, room, seq: 1, text: 'x' }, 'not_found');
  assert.equal(err.message, `no message 1 in #${room}`);
});

test('rule 50: seq and reply_to are integers 0..2^53-1 written without fraction or exponent', async (t) => {
  const { a, room } = await roomWithMessage(t);
  for (const seq of [1.5, '1', 1.0 + 0.5, -1, 2 ** 53, true, null, [1]]) {
    await a.expectError({ type: 'edit', room, seq, text: 'x' }, 'bad_request');
    await a.expectError({ type: 'send', room, text: 'x', reply_to: seq }, 'bad_request');
  }
  // Written with a fraction or an exponent, the same value is no integer.
  for (const raw of ['1.0', '1e0', '10E-1']) {
    await a.send(JSON.parse(`{"type":"edit","id":"r${raw}","room":"${room}","text":"x","seq":1}`)); // valid, for contrast
    const reply = await a.next((m) => m.id === `r${raw}`);
    assert.equal(reply.type, 'ack');
    await a.sendText(`{"type":"edit","id":"f${raw}","room":"${room}","text":"x","seq":${raw}}`);
    assertError(await a.next((m) => m.id === `f${raw}`), 'bad_request', `f${raw}`);
    await a.sendText(`{"type":"history","id":"h${raw}","room":"${room}","limit":${raw}}`);
    assertError(await a.next((m) => m.id === `h${raw}`), 'bad_request', `h${raw}`);
    await a.sendText(`{"type":"join","id":"j${raw}","room":"${room}","since":${raw}}`);
    assertError(await a.next((m) => m.id === `j${raw}`), 'bad_request', `j${raw}`);
    // Every other request field that takes an integer (a owns the room: ban is hers to send).
    const others = {
      react: `"seq":${raw},"emoji":"x"`, delete: `"seq":${raw}`, read: `"seq":${raw}`,
      history: `"before":${raw}`, search: `"q":"x","limit":${raw}`, ban: `"user":"zed","duration":6${raw}`,
    };
    for (const [type, fields] of Object.entries(others)) {
      const id = `${type}${raw}`;
      await a.sendText(`{"type":"${type}","id":"${id}","room":"${room}",${fields}}`);
      assertError(await a.next((m) => m.id === id), 'bad_request', id);
    }
  }
  await a.expectError({ type: 'send', room, text: 'x', reply_to: 42 }, 'not_found');
  await a.expectError({ type: 'send', room, text: 'x', reply_to: 0 }, 'not_found');
  const h = await a.expect({ type: 'history', room, before: 0 }, 'history');
  assert.deepEqual(h.messages, []);
  assert.equal((await a.expect({ type: 'join', room, since: 2 ** 53 - 1 }, 'joined')).room, room);
});

test('react: on by default, again is a no-op acked with the target seq, on:false takes it back', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  const ack = await a.request({ type: 'react', id: 12, room, seq: 1, emoji: '👍' });
  assert.deepEqual(ack, { type: 'ack', id: 12, room, seq: 2 });
  for (const c of [a, b]) {
    const e = await nextEvent(c, room, 'reaction');
    assertKeys(e, ['type', 'room', 'seq', 'ts', 'from', 'target', 'emoji', 'on'], 'reaction');
    assert.deepEqual([e.seq, e.target, e.emoji, e.on, e.from], [2, 1, '👍', true, a.name]);
  }
  assert.deepEqual(await a.request({ type: 'react', id: 13, room, seq: 1, emoji: '👍', on: true }), { type: 'ack', id: 13, room, seq: 1 });
  assert.deepEqual(await a.request({ type: 'react', id: 14, room, seq: 1, emoji: '🎉', on: false }), { type: 'ack', id: 14, room, seq: 1 });
  await assertNoEventBefore(b, a, room); // seq 3: the marker
  const off = await a.request({ type: 'react', room, seq: 1, emoji: '👍', on: false });
  assert.equal(off.seq, 4);
  const e = await nextEvent(b, room, 'reaction');
  assert.deepEqual([e.seq, e.emoji, e.on], [4, '👍', false]);
  const h = await a.expect({ type: 'history', room, limit: 1, before: 2 }, 'history');
  assert.ok(!('reactions' in h.messages[0]), `reactions taken back still listed: ${JSON.stringify(h.messages[0])}`);
});

test('emoji (rules 54, 86): 1..32 bytes, no white space or control; compared byte for byte', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  await a.expectError({ type: 'react', room, seq: 1, emoji: '' }, 'bad_request');
  await a.expectError({ type: 'react', room, seq: 1, emoji: 'a b' }, 'bad_request');
  await a.expectError({ type: 'react', room, seq: 1, emoji: '\u00a0' }, 'bad_request');
  await a.expectError({ type: 'react', room, seq: 1, emoji: 'x\u0001' }, 'bad_request');
  await a.expectError({ type: 'react', room, seq: 1, emoji: 'x'.repeat(33) }, 'too_long');
  await a.expectError({ type: 'react', room, seq: 1, emoji: ` ${'x'.repeat(32)}` }, 'too_long');
  await a.expectError({ type: 'react', room, seq: 1, emoji: 7 }, 'bad_request');
  await a.expectError({ type: 'react', room, seq: 1, emoji: '👍', on: 'yes' }, 'bad_request');
  await a.expectError({ type: 'react', room, seq: 1, emoji: '👍', on: null }, 'bad_request');
  assert.equal((await a.request({ type: 'react', room, seq: 1, emoji: 'x'.repeat(32) })).seq, 2);
  for (const emoji of [':+1:', '👍', '👍🏽']) await b.request({ type: 'react', room, seq: 1, emoji });
  await a.request({ type: 'react', room, seq: 1, emoji: '👍' });
  const h = await a.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages[0].reactions, [
    { emoji: 'x'.repeat(32), count: 1, me: true, users: [a.name] },
    { emoji: ':+1:', count: 1, me: false, users: [b.name] },
    { emoji: '👍', count: 2, me: true, users: [b.name, a.name] },
    { emoji: '👍🏽', count: 1, me: false, users: [b.name] },
  ]);
  // Emoji are ordered by their oldest standing reaction: taking x back and adding it again moves it last.
  await a.request({ type: 'react', room, seq: 1, emoji: 'x'.repeat(32), on: false });
  await b.request({ type: 'react', room, seq: 1, emoji: 'x'.repeat(32) });
  const h2 = await b.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h2.messages[0].reactions.map((r) => [r.emoji, r.me]), [[':+1:', true], ['👍', true], ['👍🏽', true], ['x'.repeat(32), true]]);
});

test('delete: ack and event; then not_found for delete, edit, react and reply_to; history shows it deleted', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  await b.say(room, 'a reply', { reply_to: 1 });
  await a.request({ type: 'react', room, seq: 1, emoji: '👀' });
  await b.expectError({ type: 'delete', room, seq: 1 }, 'forbidden');
  const ack = await a.request({ type: 'delete', id: 14, room, seq: 1, cid: 'del-1' });
  assert.deepEqual(ack, { type: 'ack', id: 14, room, seq: 4 });
  for (const c of [a, b]) {
    const e = await nextEvent(c, room, 'delete');
    assert.deepEqual(e, { type: 'delete', room, seq: 4, ts: e.ts, from: a.name, target: 1, cid: 'del-1' });
  }
  await a.expectError({ type: 'delete', room, seq: 1 }, 'not_found');
  await a.expectError({ type: 'edit', room, seq: 1, text: 'x' }, 'not_found');
  await b.expectError({ type: 'react', room, seq: 1, emoji: '👀' }, 'not_found');
  await b.expectError({ type: 'send', room, text: 'x', reply_to: 1 }, 'not_found');
  const h = await b.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages[0], { type: 'message', room, seq: 1, ts: h.messages[0].ts, from: a.name, deleted: true });
  assert.equal(h.messages[1].reply_to, 1, 'a reply keeps its reply_to (rule 55)');
  // The cid stays taken: a send with it is acked with the delete's seq, nothing stored.
  assert.deepEqual(await a.request({ type: 'send', id: 'c', room, text: 'again', cid: 'del-1' }), { type: 'ack', id: 'c', room, seq: 4 });
});

test('history (rule 56): current states, limit counts messages, before compares with their seqs', async (t) => {
  const { a, b, room } = await roomWithMessage(t, 'one'); // 1
  await b.say(room, 'two'); // 2
  await a.request({ type: 'edit', room, seq: 1, text: 'one!' }); // 3
  await a.say(room, 'three'); // 4
  await a.request({ type: 'react', room, seq: 4, emoji: '✅' }); // 5
  const h = await b.expect({ type: 'history', room, before: 5, limit: 2 }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.text]), [[2, 'two'], [4, 'three']]);
  assert.deepEqual(h.messages[1].reactions, [{ emoji: '✅', count: 1, me: false, users: [a.name] }]);
  const all = await b.expect({ type: 'history', room, before: 4 }, 'history');
  assert.deepEqual(all.messages.map((m) => [m.seq, m.text, 'edited' in m]), [[1, 'one!', true], [2, 'two', false]]);
});

test('history (rule 56): a reaction\'s users are the first 20 in the order of their reactions; count is all', async (t) => {
  const { a, room } = await roomWithMessage(t);
  const guests = await Promise.all(Array.from({ length: 21 }, () => guest(server, t)));
  for (const g of guests) await g.join(room);
  for (const g of guests) await g.request({ type: 'react', room, seq: 1, emoji: '👍' }); // one after another: their order
  await a.request({ type: 'react', room, seq: 1, emoji: '👍' });
  const [entry] = (await a.expect({ type: 'history', room, limit: 1 }, 'history')).messages[0].reactions;
  assert.deepEqual(entry, { emoji: '👍', count: 22, me: true, users: guests.slice(0, 20).map((g) => g.name) });
});

test('replay (rule 48) from the ring: current texts, edits without text, deleted forms', async (t) => {
  await replayForms(t, server);
});

test('replay (rule 48) from SQLite, with a one-entry ring, and after a restart', async (t) => {
  const s = await startChatServer(['--rate-limit', '0', '--ring-size', '1']);
  t.after(() => s.dispose());
  const { room, c } = await replayForms(t, s);
  await s.stop();
  const s2 = await s.restart();
  t.after(() => s2.kill());
  const again = await user(s2, t);
  await again.join(room, 0);
  const seen = [];
  for (let i = 0; i < 8; i++) seen.push(await again.next((m) => m.room === room && m.seq !== undefined));
  assert.deepEqual(seen, c.replayed);
});

// Builds a room's timeline with edits, reactions and a delete, and checks a join's replay of it.
async function replayForms(t, srv) {
  const a = await user(srv, t);
  const b = await user(srv, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  await a.say(room, `secret plan @${b.name}`, { cid: 'm1' }); // 1
  await b.say(room, 'hello'); // 2
  await a.request({ type: 'edit', room, seq: 1, text: 'redacted plan' }); // 3
  await b.request({ type: 'react', room, seq: 1, emoji: '👍' }); // 4
  await b.request({ type: 'edit', room, seq: 2, text: 'hello again' }); // 5
  await b.request({ type: 'react', room, seq: 2, emoji: '🙂' }); // 6
  await b.say(room, 'bye', { reply_to: 1 }); // 7
  await a.request({ type: 'delete', room, seq: 1 }); // 8
  const c = await user(srv, t);
  const joined = await c.join(room, 0);
  assert.equal(joined.seq, 8);
  const replayed = [];
  for (let i = 0; i < 8; i++) replayed.push(await c.next((m) => m.room === room && m.seq !== undefined));
  const ts = replayed.map((m) => m.ts);
  assert.deepEqual(replayed, [
    { type: 'message', room, seq: 1, ts: ts[0], from: a.name, cid: 'm1', deleted: true },
    { type: 'message', room, seq: 2, ts: ts[1], from: b.name, text: 'hello again' },
    { type: 'edit', room, seq: 3, ts: ts[2], from: a.name, target: 1, deleted: true },
    { type: 'reaction', room, seq: 4, ts: ts[3], from: b.name, target: 1, deleted: true },
    { type: 'edit', room, seq: 5, ts: ts[4], from: b.name, target: 2 },
    { type: 'reaction', room, seq: 6, ts: ts[5], from: b.name, target: 2, emoji: '🙂', on: true },
    { type: 'message', room, seq: 7, ts: ts[6], from: b.name, text: 'bye', reply_to: 1 },
    { type: 'delete', room, seq: 8, ts: ts[7], from: a.name, target: 1 },
  ]);
  // A join with since in the middle replays only what follows.
  const d = await user(srv, t);
  await d.join(room, 6);
  assert.deepEqual(await d.next((m) => m.room === room && m.seq !== undefined), replayed[6]);
  return { room, c: { replayed } };
}

test('cid (rule 49): one namespace per identity and room for every event-storing request', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  const first = await a.request({ type: 'react', room, seq: 1, emoji: '🔥', cid: 'k1' });
  assert.equal(first.seq, 2);
  assert.equal((await nextEvent(b, room, 'reaction')).cid, 'k1');
  // The same cid on an edit (or a send, or a delete of a message that does not exist) is a duplicate.
  assert.equal((await a.request({ type: 'edit', room, seq: 1, text: 'x', cid: 'k1' })).seq, 2);
  assert.equal((await a.request({ type: 'send', room, text: 'x', cid: 'k1' })).seq, 2);
  assert.equal((await a.request({ type: 'delete', room, seq: 999, cid: 'k1' })).seq, 2);
  await assertNoEventBefore(b, a, room);
  // Another identity has its own namespace.
  assert.equal((await b.request({ type: 'react', room, seq: 1, emoji: '🔥', cid: 'k1' })).seq, 4);
  const e = await nextEvent(b, room, 'reaction');
  assert.deepEqual([e.seq, e.cid, e.from], [4, 'k1', b.name]);
});

test('dm rooms: edit, delete, react reach both users without a join; another pair\'s dm room → forbidden', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const x = await user(server, t);
  const room = dmRoom(a.name, b.name);
  const ack = await a.dm(b.name, 'see you at 5');
  assert.equal(ack.room, room);
  await a.nextMessage(room);
  await b.nextMessage(room);
  assert.equal((await a.request({ type: 'edit', room, seq: 1, text: 'see you at five' })).seq, 2);
  assert.equal((await b.request({ type: 'react', room, seq: 1, emoji: '👌' })).seq, 3);
  assert.equal((await b.request({ type: 'send', to: a.name, text: 'ok', reply_to: 1 })).seq, 4);
  for (const c of [a, b]) {
    assert.equal((await nextEvent(c, room, 'edit')).text, 'see you at five');
    assert.equal((await nextEvent(c, room, 'reaction')).emoji, '👌');
    assert.equal((await c.nextMessage(room)).reply_to, 1);
  }
  await b.expectError({ type: 'delete', room, seq: 1 }, 'forbidden');
  await x.expectError({ type: 'edit', room, seq: 1, text: 'x' }, 'forbidden');
  await x.expectError({ type: 'react', room, seq: 1, emoji: 'x' }, 'forbidden');
  assert.equal((await a.request({ type: 'delete', room, seq: 1 })).seq, 5);
  for (const c of [a, b]) assert.equal((await nextEvent(c, room, 'delete')).target, 1);
});

test('rule 75: field validation, then membership, then a cid duplicate, then not_found, then rights', async (t) => {
  const { a, b, room } = await roomWithMessage(t);
  const other = uniqRoom();
  await a.expectError({ type: 'edit', room: other, seq: 'x', text: 'x' }, 'bad_request');
  await a.expectError({ type: 'edit', room: other, seq: 99, text: 'x'.repeat(4001) }, 'too_long');
  await a.expectError({ type: 'edit', room: other, seq: 99, text: 'x' }, 'not_member');
  await b.request({ type: 'send', room, text: 'cid holder', cid: 'z' });
  assert.equal((await b.request({ type: 'edit', room, seq: 99, text: 'x', cid: 'z' })).type, 'ack');
  await b.expectError({ type: 'edit', room, seq: 99, text: 'x' }, 'not_found');
  await b.expectError({ type: 'edit', room, seq: 1, text: 'x' }, 'forbidden');
});

test('guest identity (rule 51): a guest that registers its name keeps its messages, reactions and cids; its dm messages stay out of reach', async (t) => {
  const name = uniq('g');
  const g = await guest(server, t, name);
  const b = await user(server, t);
  const room = await openRoom(server, t);
  await g.join(room);
  await b.join(room);
  await g.say(room, 'guest words', { cid: 'gc' });
  await g.request({ type: 'react', room, seq: 1, emoji: '⭐' });
  await g.dm(b.name, 'guest dm');
  await g.register(name);
  // The same connection is now the account: its message, reaction and cid are the account's.
  assert.equal((await g.request({ type: 'edit', room, seq: 1, text: 'account words' })).seq, 3);
  assert.deepEqual(await g.request({ type: 'react', id: 'n', room, seq: 1, emoji: '⭐' }), { type: 'ack', id: 'n', room, seq: 1 });
  assert.equal((await g.request({ type: 'send', room, text: 'again', cid: 'gc' })).seq, 1);
  const h = await b.expect({ type: 'history', room }, 'history');
  assert.equal(h.messages[0].from, name);
  // And from another connection logged in with the password.
  const g2 = await connect(server, t);
  await g2.login(name, 'correct-horse-9');
  await g2.join(room);
  assert.equal((await g2.request({ type: 'delete', room, seq: 1 })).seq, 4);
  await g2.expectError({ type: 'edit', room: dmRoom(name, b.name), seq: 1, text: 'x' }, 'not_found');
});

test('a guest reads only the dm messages of its own session; a new guest of the same name cannot edit the old one\'s', async (t) => {
  const name = uniq('g');
  const g = await guest(server, t, name);
  const b = await user(server, t);
  const room = await openRoom(server, t);
  await g.join(room);
  await g.say(room, 'from the first session');
  await g.close();
  const g2 = await connect(server, t);
  // The server may take a moment to notice the disconnect; retry while it answers name_taken.
  const w = await eventually(async () => {
    const r = await g2.request({ type: 'login', name });
    return r.type === 'error' && r.code === 'name_taken' ? null : r;
  }, undefined, `guest name ${name} to be free after its guest left`);
  assert.equal(w.type, 'welcome');
  await g2.join(room);
  await g2.expectError({ type: 'edit', room, seq: 1, text: 'x' }, 'forbidden');
  await b.dm(name, 'to the second session');
  assert.equal((await g2.request({ type: 'react', room: dmRoom(name, b.name), seq: 1, emoji: '👋' })).type, 'ack');
});
