// Telnet and WebSocket users together: messages, presence, seq and history are shared.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { PASSWORD, assertMessageShape, connect, dmRoom, uniq, uniqRoom, user } from './lib/chat.mjs';
import { esc, telnetLogin } from './lib/telnet.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

test('telnet and WebSocket users in #general see each other\'s messages and presence, with one seq', async (t) => {
  const ws = await user(server, t);
  const j = await ws.join('general');
  const base = j.seq;
  const tel = await telnetLogin(server, t, uniq('Tel'));
  assert.deepEqual(await ws.next((m) => m.type === 'presence'), {
    type: 'presence',
    room: 'general',
    user: tel.name,
    state: 'online',
  });
  await tel.send('hello from telnet');
  await tel.nextLine(`[#general] ${tel.name}: hello from telnet`);
  const m1 = await ws.nextMessage('general');
  assertMessageShape(m1, { room: 'general', from: tel.name, text: 'hello from telnet', seq: base + 1 });
  const ack = await ws.say('general', 'hello from the web');
  assert.equal(ack.seq, base + 2);
  await tel.nextLine(`[#general] ${ws.name}: hello from the web`);
  // A second WebSocket user joining is shown on telnet as a "* " line.
  const ws2 = await user(server, t);
  await ws2.join('general');
  await tel.nextLine(new RegExp(`^\\* .*${esc(ws2.name)}`), undefined, 'presence of a WebSocket user on telnet');
  await ws2.leave('general');
  await tel.nextLine(new RegExp(`^\\* .*${esc(ws2.name)}`), undefined, 'offline of a WebSocket user on telnet');
  // Shared history.
  const h = await ws.expect({ type: 'history', room: 'general', limit: 2 }, 'history');
  assert.deepEqual(h.messages.map((m) => [m.seq, m.from, m.text]), [
    [base + 1, tel.name, 'hello from telnet'],
    [base + 2, ws.name, 'hello from the web'],
  ]);
  tel.discardLines();
  await tel.send('/history 2');
  assert.equal(await tel.nextLine(/^\[#general\]/), `[#general] ${tel.name}: hello from telnet`);
  assert.equal(await tel.nextLine(/^\[#general\]/), `[#general] ${ws.name}: hello from the web`);
  // Telnet quitting is an offline for the WebSocket side.
  await tel.send('/quit');
  await tel.waitClosed();
  assert.deepEqual(await ws.next((m) => m.type === 'presence' && m.user === tel.name), {
    type: 'presence',
    room: 'general',
    user: tel.name,
    state: 'offline',
  });
  tel.assertCrlf();
});

test('a telnet user joining a room is in who and members for WebSocket users, and vice versa', async (t) => {
  const room = uniqRoom();
  const ws = await user(server, t);
  await ws.join(room);
  const tel = await telnetLogin(server, t, uniq('Tel'));
  await tel.send(`/join ${room}`);
  await ws.next((m) => m.type === 'presence' && m.user === tel.name);
  const w = await ws.expect({ type: 'who', room }, 'members');
  assert.deepEqual([...w.members].sort(), [ws.name, tel.name].sort());
  tel.discardLines();
  await tel.send('/who');
  const line = await tel.nextLine(new RegExp(`^\\* .*${esc(ws.name)}`), undefined, '/who listing the WebSocket user');
  assert.ok(line.includes(tel.name) || tel.pendingLines().some((l) => l.includes(tel.name)));
  assert.equal((await ws.allRooms()).find((x) => x.name === room)?.members, 2);
});

test('the same registered user on telnet and WebSocket: dms reach both, messages carry one spelling', async (t) => {
  const name = uniq('Both');
  const ws = await connect(server, t);
  await ws.register(name);
  await ws.login(name.toLowerCase(), PASSWORD);
  const tel = await telnetLogin(server, t, name, { line: `/login ${name.toUpperCase()} ${PASSWORD}` });
  const other = await user(server, t);
  await other.dm(name, 'to both');
  const room = dmRoom(name, other.name);
  assert.equal((await ws.nextMessage(room)).text, 'to both');
  await tel.nextLine(`[dm] ${other.name} -> ${name}: to both`);
  // A dm sent from telnet shows on the user's WebSocket connection too.
  await tel.send(`/msg ${other.name} from telnet`);
  await tel.nextLine(`[dm] ${name} -> ${other.name}: from telnet`);
  const m = await ws.nextMessage(room, (x) => x.text === 'from telnet');
  assert.equal(m.from, name);
  assert.equal((await other.nextMessage(room, (x) => x.text === 'from telnet')).from, name);
});

test('a telnet guest and a WebSocket guest cannot take the same name', async (t) => {
  const tel = await telnetLogin(server, t, uniq('Dup'));
  const ws = await connect(server, t);
  await ws.expectError({ type: 'login', name: tel.name.toUpperCase() }, 'name_taken');
});

test('multi-line text from telnet is impossible, from WebSocket it is kept intact for WebSocket readers', async (t) => {
  const room = uniqRoom();
  const a = await user(server, t);
  const b = await user(server, t);
  await a.join(room);
  await b.join(room);
  const tel = await telnetLogin(server, t, uniq('Tel'));
  await tel.send(`/join ${room}`);
  await a.next((m) => m.type === 'presence' && m.user === tel.name);
  await a.say(room, 'one\ntwo');
  assert.equal((await b.nextMessage(room)).text, 'one\ntwo');
  await tel.nextLine(`[#${room}] ${a.name}: one`);
  await tel.nextLine('  two');
});
