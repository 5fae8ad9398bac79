// Errors: envelope rules 1-5 and 37, id echo, not_logged_in, error precedence, the connection stays.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { PASSWORD, assertError, connect, dmRoom, uniq, uniqRoom, user } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer();
});

after(() => server?.dispose());

// Sends raw text and returns the next message that is an error.
async function rawError(c, text) {
  await c.sendText(text);
  return c.next((m) => m.type === 'error', undefined, `the error for ${JSON.stringify(text).slice(0, 80)}`);
}

test('text that is not JSON → bad_json without id; the connection stays open (rule 2)', async (t) => {
  const c = await connect(server, t);
  for (const text of ['not json', '{', '{"type":"ping","id":1', "{'type':'ping'}", '', '{"type":"ping",}']) {
    assertError(await rawError(c, text), 'bad_json', undefined, JSON.stringify(text));
  }
  await c.sync();
});

test('JSON that is not an object → bad_json without id (rule 2)', async (t) => {
  const c = await connect(server, t);
  for (const text of ['[1,2]', '42', '"ping"', 'null', 'true', '[{"type":"ping","id":1}]']) {
    assertError(await rawError(c, text), 'bad_json', undefined, text);
  }
  await c.sync();
});

test('bad_json without id also after login', async (t) => {
  const u = await user(server, t);
  assertError(await rawError(u, '{"type":"send","id":3,'), 'bad_json', undefined);
  await u.sync();
});

test('id is echoed as the same JSON value, number or string (rule 1)', async (t) => {
  const c = await connect(server, t);
  for (const id of [0, 1, -3, 1.5, 0.1, 12345678901, 2 ** 53 - 1, 1e-7, 1e300, -2.5e-300, '', 'abc', '42', ' 7 ', 'ü→✓', '\u0000', 'x'.repeat(200)]) {
    const reply = await c.request({ type: 'ping', id });
    assert.deepEqual(reply, { type: 'pong', id }, `id ${JSON.stringify(id)}`);
  }
  // Also on errors, and preserved exactly from the wire (not re-rounded).
  await c.sendText('{"type":"nope","id":7}');
  assertError(await c.next((m) => m.type === 'error'), 'unknown_type', 7);
  await c.sendText('{"type":"nope","id":"7"}');
  assertError(await c.next((m) => m.type === 'error'), 'unknown_type', '7');
});

test('id echoed in its wire form: 1.5 stays 1.5, escapes in strings decoded', async (t) => {
  const c = await connect(server, t);
  const got = new Promise((resolve) => c.ws.once('message', (d) => resolve(d.toString('utf8'))));
  await c.sendText('{"type":"ping","id":"a\\u0041\\n"}');
  const raw = await got;
  assert.deepEqual(JSON.parse(raw), { type: 'pong', id: 'aA\n' });
});

test('id of another type (bool, object, array, null) → bad_request without id (rules 1, 37)', async (t) => {
  const c = await connect(server, t);
  for (const id of ['true', 'false', '{}', '{"a":1}', '[]', '[1]', 'null']) {
    const err = await rawError(c, `{"type":"ping","id":${id}}`);
    assertError(err, 'bad_request', undefined, `id ${id}`);
  }
  await c.sync();
});

test('missing or non-string type → bad_request with the id echoed (rule 3)', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ id: 1 }, 'bad_request');
  await c.expectError({ id: 2, type: 5 }, 'bad_request');
  await c.expectError({ id: 3, type: ['ping'] }, 'bad_request');
  await c.expectError({ id: 4, type: { name: 'ping' } }, 'bad_request');
  await c.expectError({ id: 5, type: null }, 'bad_request');
  assertError(await rawError(c, '{}'), 'bad_request', undefined, '{}');
});

test('unknown type → unknown_type, before and after login', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 'frobnicate' }, 'unknown_type');
  await c.expectError({ type: 'PING' }, 'unknown_type');
  await c.expectError({ type: '' }, 'unknown_type');
  // Server-to-client types are not requests.
  await c.expectError({ type: 'welcome' }, 'unknown_type');
  await c.login(uniq('g'));
  await c.expectError({ type: 'frobnicate' }, 'unknown_type');
  await c.expectError({ type: 'message', room: 'general', text: 'x' }, 'unknown_type');
});

test('before login only register, login and ping are served: others → not_logged_in (rule 4)', async (t) => {
  const c = await connect(server, t);
  for (const req of [
    { type: 'join', room: 'general' },
    { type: 'leave', room: 'general' },
    { type: 'rooms' },
    { type: 'who', room: 'general' },
    { type: 'send', room: 'general', text: 'x' },
    { type: 'send', to: 'bob', text: 'x' },
    { type: 'history', room: 'general' },
    { type: 'typing', room: 'general' },
  ]) {
    await c.expectError(req, 'not_logged_in');
  }
  await c.sync();
});

test('rule 5: bad_request on type and unknown_type outrank not_logged_in', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 7 }, 'bad_request');
  await c.expectError({ type: 'nosuch' }, 'unknown_type');
});

test('rule 5: not_logged_in outranks field validation', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 'send', room: 'general', text: 5 }, 'not_logged_in');
  await c.expectError({ type: 'send', room: 'bad room', text: 'x' }, 'not_logged_in');
  await c.expectError({ type: 'send', room: 'general', text: 'x'.repeat(5000) }, 'not_logged_in');
  await c.expectError({ type: 'join', room: null }, 'not_logged_in');
  await c.expectError({ type: 'join' }, 'not_logged_in');
  await c.expectError({ type: 'history', room: 'general', limit: 0 }, 'not_logged_in');
});

test('rule 5: field validation (bad_request, bad_name, too_long) outranks membership', async (t) => {
  const u = await user(server, t);
  const room = uniqRoom(); // not joined
  await u.expectError({ type: 'send', room, text: '' }, 'bad_request');
  await u.expectError({ type: 'send', room, text: 5 }, 'bad_request');
  await u.expectError({ type: 'send', room, text: 'x', cid: '' }, 'bad_request');
  await u.expectError({ type: 'send', room, text: 'a\u0007' }, 'bad_request');
  await u.expectError({ type: 'send', room, text: 'x'.repeat(4001) }, 'too_long');
  await u.expectError({ type: 'typing', room: 'No Such Room!' }, 'bad_name');
  // A dm room of another pair: validation first, then forbidden.
  const other = dmRoom('zz-a', 'zz-b');
  await u.expectError({ type: 'send', room: other, text: '' }, 'bad_request');
  await u.expectError({ type: 'send', room: other, text: 'y'.repeat(4001) }, 'too_long');
  await u.expectError({ type: 'send', room: other, text: 'fine' }, 'forbidden');
  await u.expectError({ type: 'history', room: other, limit: 0 }, 'bad_request');
  await u.expectError({ type: 'join', room: other, since: -1 }, 'bad_request');
  // A dm to an unknown user with a bad text: validation first.
  await u.expectError({ type: 'send', to: uniq('ghost'), text: '' }, 'bad_request');
  await u.expectError({ type: 'send', to: uniq('ghost'), text: 'z'.repeat(4001) }, 'too_long');
  await u.expectError({ type: 'send', to: 'bad name', text: 'x' }, 'bad_name');
  // Leaving a room not joined with a bad name: bad_name, not not_member.
  await u.expectError({ type: 'leave', room: 'Bad Name' }, 'bad_name');
});

test('rule 37: a field present with null → bad_request, for every field', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 'login', name: null }, 'bad_request');
  await c.expectError({ type: 'login', name: uniq('n'), password: null }, 'bad_request');
  await c.expectError({ type: 'login', token: null }, 'bad_request');
  await c.expectError({ type: 'register', name: null, password: PASSWORD }, 'bad_request');
  await c.expectError({ type: 'register', name: uniq('n'), password: null }, 'bad_request');
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.expectError({ type: 'join', room: null }, 'bad_request');
  await u.expectError({ type: 'join', room, since: null }, 'bad_request');
  await u.expectError({ type: 'leave', room: null }, 'bad_request');
  await u.expectError({ type: 'who', room: null }, 'bad_request');
  await u.expectError({ type: 'send', room, text: null }, 'bad_request');
  await u.expectError({ type: 'send', room, text: 'x', cid: null }, 'bad_request');
  await u.expectError({ type: 'send', room: null, text: 'x' }, 'bad_request');
  await u.expectError({ type: 'send', to: null, text: 'x' }, 'bad_request');
  await u.expectError({ type: 'history', room: null }, 'bad_request');
  await u.expectError({ type: 'history', room, before: null }, 'bad_request');
  await u.expectError({ type: 'history', room, limit: null }, 'bad_request');
  await u.expectError({ type: 'typing', room: null }, 'bad_request');
  // Nothing was sent by the null cases.
  const ack = await u.say(room, 'after nulls');
  assert.equal(ack.seq, 1);
});

test('ill-typed fields → bad_request', async (t) => {
  const u = await user(server, t);
  const room = uniqRoom();
  await u.join(room);
  await u.expectError({ type: 'join', room: 5 }, 'bad_request');
  await u.expectError({ type: 'join', room: ['general'] }, 'bad_request');
  await u.expectError({ type: 'join' }, 'bad_request');
  await u.expectError({ type: 'leave' }, 'bad_request');
  await u.expectError({ type: 'who' }, 'bad_request');
  await u.expectError({ type: 'history' }, 'bad_request');
  await u.expectError({ type: 'history', room, limit: '5' }, 'bad_request');
  await u.expectError({ type: 'history', room, before: '5' }, 'bad_request');
  await u.expectError({ type: 'send', room, text: { t: 'x' } }, 'bad_request');
});

test('the connection stays open after a run of errors of every kind', async (t) => {
  const u = await user(server, t);
  await u.sendText('garbage');
  await u.sendText('{"type":5}');
  await u.sendText('{"type":"nope","id":1}');
  await u.sendText('{"type":"join","id":2,"room":"Bad Name"}');
  await u.sendText('{"type":"leave","id":3,"room":"nowhere"}');
  const codes = [];
  for (let i = 0; i < 5; i++) codes.push((await u.next((m) => m.type === 'error')).code);
  assert.deepEqual(codes.sort(), ['bad_json', 'bad_name', 'bad_request', 'not_member', 'unknown_type']);
  assert.ok(u.isOpen);
  await u.sync();
});
