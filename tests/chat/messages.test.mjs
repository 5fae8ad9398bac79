// Messages: send/ack/message, seq, trimming, text limits and control characters, cid retries,
// history, typing, ping.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import {
  assertKeys,
  assertMessageShape,
  assertSeqRun,
  connect,
  guest,
  uniqRoom,
  user, openRoom } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

// Two users joined to a fresh room.
async function pair(t) {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  return { a, b, room };
}

test('send → ack {type,id,room,seq} exactly; message {type,room,seq,ts,from,text} to every member', async (t) => {
  const { a, b, room } = await pair(t);
  const before = Date.now();
  const ack = await a.request({ type: 'send', id: 7, room, text: 'hello' });
  assert.deepEqual(ack, { type: 'ack', id: 7, room, seq: 1 });
  for (const c of [a, b]) {
    const m = await c.nextMessage(room);
    assertMessageShape(m, { room, from: a.name, text: 'hello', seq: 1 });
    assert.ok(m.ts >= before - 2000 && m.ts <= Date.now() + 2000, `ts ${m.ts} is not the send time`);
  }
});

test('a message with cid carries it in the message event', async (t) => {
  const { a, b, room } = await pair(t);
  const ack = await a.request({ type: 'send', id: 'c', room, text: 'with cid', cid: 'cid-1' });
  assert.deepEqual(ack, { type: 'ack', id: 'c', room, seq: 1 });
  for (const c of [a, b]) {
    assertMessageShape(await c.nextMessage(room), { room, from: a.name, text: 'with cid', cid: 'cid-1', seq: 1 });
  }
});

test('seq is per room: 1, 2, 3 ... with no gaps, independent between rooms', async (t) => {
  const a = await user(server, t);
  const r1 = uniqRoom();
  const r2 = uniqRoom();
  await a.join(r1);
  await a.join(r2);
  const acks = [];
  for (let i = 0; i < 4; i++) {
    acks.push((await a.say(r1, `r1-${i}`)).seq);
    if (i % 2 === 0) acks.push((await a.say(r2, `r2-${i}`)).seq);
  }
  assert.deepEqual(acks, [1, 1, 2, 3, 2, 4]);
  assertSeqRun(await a.messages(r1, 4), r1, 1, 4, 'room 1');
  assertSeqRun(await a.messages(r2, 2), r2, 1, 2, 'room 2');
});

test('messages are not delivered to connections outside the room', async (t) => {
  const { a, room } = await pair(t);
  const outsider = await user(server, t);
  const other = uniqRoom();
  await outsider.join(other);
  await a.join(other);
  await a.say(room, 'private to the room');
  await a.nextMessage(room);
  await a.say(other, 'marker');
  const { before } = await outsider.until((m) => m.type === 'message' && m.text === 'marker');
  assert.deepEqual(before.filter((m) => m.type === 'message'), []);
});

test('trailing white space is trimmed; the trimmed text is stored and delivered (rule 16)', async (t) => {
  const { a, b, room } = await pair(t);
  const cases = [
    ['hello  ', 'hello'],
    ['hello\n', 'hello'],
    ['hello \t\n \r\n', 'hello'],
    ['  leading kept', '  leading kept'],
    ['nbsp\u00a0\u00a0', 'nbsp'],
    ['ideographic\u3000', 'ideographic'],
    ['em space\u2003\u2028', 'em space'],
    ['inner  spaces  kept', 'inner  spaces  kept'],
  ];
  const delivered = [];
  for (const [text, expected] of cases) {
    await a.say(room, text);
    const m = await b.nextMessage(room);
    assert.equal(m.text, expected, `sent ${JSON.stringify(text)}`);
    delivered.push(m);
  }
  const h = await b.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages, delivered, 'history holds the trimmed texts');
});

test('a text empty after trimming → bad_request (rule 16)', async (t) => {
  const { a, room } = await pair(t);
  for (const text of ['', ' ', '\n', ' \t\n ', '\u00a0', '\u3000 ']) {
    await a.expectError({ type: 'send', room, text }, 'bad_request');
  }
  // Nothing was stored.
  const ack = await a.say(room, 'first real');
  assert.equal(ack.seq, 1);
});

test('newlines and tabs inside a text are allowed and kept', async (t) => {
  const { a, b, room } = await pair(t);
  const text = 'line one\nline two\n\n\tindented';
  await a.say(room, text);
  assert.equal((await b.nextMessage(room)).text, text);
});

test('other control characters (C0, DEL, C1, escape sequences) → bad_request (rule 41)', async (t) => {
  const { a, b, room } = await pair(t);
  for (const text of ['a\u0000b', 'a\u0001b', 'bell\u0007', 'red \u001b[31mtext', 'a\rb', 'a\u000bb', 'a\u000cb', 'del\u007f', 'c1\u0085x', 'csi\u009b31m', 'a\u009fb', '\u0008back']) {
    await a.expectError({ type: 'send', room, text }, 'bad_request');
  }
  await a.say(room, 'clean');
  const m = await b.nextMessage(room);
  assert.equal(m.seq, 1, 'a rejected text was stored');
});

test('text length: 4000 code points accepted, 4001 → too_long (counted in code points)', async (t) => {
  const { a, b, room } = await pair(t);
  await a.say(room, 'a'.repeat(4000));
  assert.equal((await b.nextMessage(room)).text.length, 4000);
  const astral = '😀'.repeat(4000); // 4000 code points, 8000 UTF-16 units, 16000 bytes
  await a.say(room, astral);
  assert.equal((await b.nextMessage(room)).text, astral);
  const accented = 'é'.repeat(4000); // 8000 bytes
  await a.say(room, accented);
  assert.equal((await b.nextMessage(room)).text, accented);
  await a.say(room, `${'b'.repeat(4000)}   \n`); // trimmed before counting
  assert.equal((await b.nextMessage(room)).text, 'b'.repeat(4000));
  await a.expectError({ type: 'send', room, text: 'a'.repeat(4001) }, 'too_long');
  await a.expectError({ type: 'send', room, text: '😀'.repeat(4001) }, 'too_long');
  await a.expectError({ type: 'send', room, text: 'x'.repeat(10000) }, 'too_long');
});

test('text ill-typed or missing → bad_request; neither room nor to → bad_request', async (t) => {
  const { a, room } = await pair(t);
  await a.expectError({ type: 'send', room }, 'bad_request');
  await a.expectError({ type: 'send', room, text: 5 }, 'bad_request');
  await a.expectError({ type: 'send', room, text: ['x'] }, 'bad_request');
  await a.expectError({ type: 'send', text: 'nowhere' }, 'bad_request');
  await a.expectError({ type: 'send', room: 5, text: 'x' }, 'bad_request');
});

test('send to a room not joined → not_member', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.expectError({ type: 'send', room, text: 'x' }, 'not_member');
  await a.expectError({ type: 'send', room: 'general', text: 'x' }, 'not_member');
});

test('cid retry: same user, same room → ack with the first seq, delivered to nobody (rule 17)', async (t) => {
  const { a, b, room } = await pair(t);
  const first = await a.say(room, 'original', { cid: 'retry-1' });
  assert.equal(first.seq, 1);
  await a.nextMessage(room);
  await b.nextMessage(room);
  const again = await a.request({ type: 'send', id: 'again', room, text: 'original', cid: 'retry-1' });
  assert.deepEqual(again, { type: 'ack', id: 'again', room, seq: 1 });
  const changed = await a.request({ type: 'send', id: 'chg', room, text: 'different text', cid: 'retry-1' });
  assert.deepEqual(changed, { type: 'ack', id: 'chg', room, seq: 1 }, 'a retry with other text is still a duplicate');
  // From another connection of the same user too.
  const a2 = await connect(server, t);
  await a2.loginToken(a.token);
  await a2.join(room);
  assert.equal((await a2.say(room, 'tab retry', { cid: 'retry-1' })).seq, 1);
  const next = await a.say(room, 'next');
  assert.equal(next.seq, 2, 'a duplicate used a seq');
  for (const c of [a, b]) {
    const { match, before } = await c.until((m) => m.type === 'message' && m.text === 'next');
    assert.equal(match.seq, 2);
    assert.deepEqual(before.filter((m) => m.type === 'message'), [], `${c.label} got a duplicate delivered`);
  }
  const h = await b.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.text, m.cid]), [[1, 'original', 'retry-1'], [2, 'next', undefined]]);
});

test('the same cid in another room, or by another user, is a new message', async (t) => {
  const { a, b, room } = await pair(t);
  const other = uniqRoom();
  await a.join(other);
  assert.equal((await a.say(room, 'x', { cid: 'shared' })).seq, 1);
  assert.equal((await a.say(other, 'y', { cid: 'shared' })).seq, 1);
  assert.equal((await b.say(room, 'z', { cid: 'shared' })).seq, 2);
  const ms = await a.messages(room, 2);
  assert.deepEqual(ms.map((m) => [m.seq, m.from, m.cid]), [[1, a.name, 'shared'], [2, b.name, 'shared']]);
});

test('cid: not a string, empty or over 64 bytes → bad_request; 64 bytes accepted (rule 17)', async (t) => {
  const { a, room } = await pair(t);
  for (const cid of [5, '', 'c'.repeat(65), 'é'.repeat(33), true, {}, ['x']]) {
    await a.expectError({ type: 'send', room, text: 'x', cid }, 'bad_request');
  }
  const ack = await a.say(room, 'ok', { cid: 'c'.repeat(64) });
  assert.equal(ack.seq, 1);
  const ack2 = await a.say(room, 'ok2', { cid: 'é'.repeat(32) });
  assert.equal(ack2.seq, 2);
});

test('cid with a control character (C0, newline, tab, DEL, C1, NUL) → bad_request (rule 41)', async (t) => {
  const { a, room } = await pair(t);
  for (const cid of ['a\nb', 'a\tb', '\u001b[2J', 'a\u007f', 'a\u0085', 'a\u009f', 'a\u0000b']) {
    await a.expectError({ type: 'send', room, text: 'x', cid }, 'bad_request');
  }
  // Other characters are fine, bidi ones included (a cid is never shown to people).
  assert.equal((await a.say(room, 'ok', { cid: 'a\u00a0b\u202e' })).seq, 1);
});

test('history → {type,id,room,messages} oldest first; entries are exactly the message events (incl. cid)', async (t) => {
  const { a, b, room } = await pair(t);
  const live = [];
  for (let i = 1; i <= 5; i++) {
    await a.say(room, `h${i}`, i % 2 ? { cid: `cid-${i}` } : {});
    live.push(await b.nextMessage(room));
  }
  const h = await b.request({ type: 'history', id: 9, room });
  assertKeys(h, ['type', 'id', 'room', 'messages'], 'history reply');
  assert.equal(h.type, 'history');
  assert.equal(h.id, 9);
  assert.equal(h.room, room);
  assert.deepEqual(h.messages, live);
});

test('history: before is exclusive, limit counts back from it, oldest first (rule 20)', async (t) => {
  const { a, room } = await pair(t);
  for (let i = 1; i <= 10; i++) await a.say(room, `n${i}`);
  let h = await a.expect({ type: 'history', room, before: 6, limit: 3 }, 'history');
  assert.deepEqual(h.messages.map((m) => m.seq), [3, 4, 5]);
  h = await a.expect({ type: 'history', room, before: 6 }, 'history');
  assert.deepEqual(h.messages.map((m) => m.seq), [1, 2, 3, 4, 5]);
  h = await a.expect({ type: 'history', room, limit: 2 }, 'history');
  assert.deepEqual(h.messages.map((m) => m.seq), [9, 10], 'without before: the newest');
  h = await a.expect({ type: 'history', room, before: 1 }, 'history');
  assert.deepEqual(h.messages, []);
  h = await a.expect({ type: 'history', room, before: 1000 }, 'history');
  assert.deepEqual(h.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

test('history: limit defaults to 50, accepts 1..200, outside → bad_request (rule 20)', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const acks = [];
  for (let i = 1; i <= 210; i++) acks.push(a.say(room, `d${i}`));
  await Promise.all(acks);
  let h = await a.expect({ type: 'history', room }, 'history');
  assertSeqRun(h.messages, room, 161, 210, 'default history');
  h = await a.expect({ type: 'history', room, limit: 200 }, 'history');
  assertSeqRun(h.messages, room, 11, 210, 'limit 200');
  h = await a.expect({ type: 'history', room, limit: 1 }, 'history');
  assertSeqRun(h.messages, room, 210, 210, 'limit 1');
  for (const limit of [0, 201, -1, 1.5, '10', 1000]) {
    await a.expectError({ type: 'history', room, limit }, 'bad_request');
  }
  for (const before of ['10', -1, 1.5]) {
    await a.expectError({ type: 'history', room, before }, 'bad_request');
  }
});

test('history of a public room needs no join (rule 20)', async (t) => {
  const { a, room } = await pair(t);
  await a.say(room, 'visible');
  const outsider = await guest(server, t);
  const h = await outsider.expect({ type: 'history', room }, 'history');
  assert.deepEqual(h.messages.map((m) => m.text), ['visible']);
});

test('typing → {type,room,user} to the others, not to the sender; not acked (rule 21)', async (t) => {
  const { a, b, room } = await pair(t);
  await a.send({ type: 'typing', room });
  const ev = await b.next((m) => m.type === 'typing', undefined, 'typing event');
  assert.deepEqual(ev, { type: 'typing', room, user: a.name });
  await a.say(room, 'after typing');
  const { before } = await a.until((m) => m.type === 'message' && m.text === 'after typing');
  assert.deepEqual(before.filter((m) => m.type !== 'presence'), [], 'the sender got something for its typing');
});

test("typing goes to every connection of the other users, not to the typist's other tabs", async (t) => {
  const { a, b, room } = await pair(t);
  const b2 = await connect(server, t);
  await b2.loginToken(b.token);
  await b2.join(room);
  const a2 = await connect(server, t);
  await a2.loginToken(a.token);
  await a2.join(room);
  await a.send({ type: 'typing', room });
  for (const c of [b, b2]) {
    assert.deepEqual(await c.next((m) => m.type === 'typing'), { type: 'typing', room, user: a.name });
  }
  await a.say(room, 'marker');
  const { before } = await a2.until((m) => m.type === 'message' && m.text === 'marker');
  assert.deepEqual(before.filter((m) => m.type === 'typing'), [], "the typist's own tab got its typing");
});

test('typing in a room not joined → not_member (rule 21)', async (t) => {
  const a = await user(server, t);
  await a.expectError({ type: 'typing', room: uniqRoom() }, 'not_member');
  await a.expectError({ type: 'typing', room: 'bad room' }, 'bad_name');
  await a.expectError({ type: 'typing' }, 'bad_request');
});

test('ping → {type:"pong", id} exactly, before and after login', async (t) => {
  const c = await connect(server, t);
  assert.deepEqual(await c.request({ type: 'ping', id: 10 }), { type: 'pong', id: 10 });
  assert.deepEqual(await c.request({ type: 'ping', id: 'p' }), { type: 'pong', id: 'p' });
  await c.login(`pinger${Date.now() % 100000}`);
  assert.deepEqual(await c.request({ type: 'ping', id: 11 }), { type: 'pong', id: 11 });
});

test('ack and message for a guest sender carry the guest name', async (t) => {
  const g = await guest(server, t);
  const room = await openRoom(server, t);
  await g.join(room);
  const ack = await g.say(room, 'from a guest');
  assert.equal(ack.seq, 1);
  assertMessageShape(await g.nextMessage(room), { room, from: g.name, text: 'from a guest', seq: 1 });
});

test('unknown fields in a request are ignored', async (t) => {
  const { a, b, room } = await pair(t);
  const ack = await a.request({ type: 'send', id: 1, room, text: 'extra', colour: 'red', seq: 99, from: 'mallory' });
  assert.deepEqual(ack, { type: 'ack', id: 1, room, seq: 1 });
  assertMessageShape(await b.nextMessage(room), { room, from: a.name, text: 'extra', seq: 1 });
});
