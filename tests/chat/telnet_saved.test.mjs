// Telnet and saved rooms (protocol 1.1 rule 78): a registered login joins general, then each
// saved room by name with its join notice, general staying current; a refusal prints its `! `
// line and the rest go on; a leave on another connection prints a `* ` notice and applies rule
// 36; telnet moves a registered user's read marker to the last seq it showed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTest, startChatServer } from './lib/server.mjs';
import { PASSWORD, connect, uniq, uniqRoom, user } from './lib/chat.mjs';
import { TelnetClient, esc, telnetLogin } from './lib/telnet.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

// A registered user whose saved rooms are `rooms` (joined on a WebSocket that then closed:
// a disconnect is no leave). Returns {name, ws}: ws, a logged-in tab in no room.
async function savedUser(srv, t, rooms) {
  const name = uniq('s');
  const first = await user(srv, t, name);
  for (const room of rooms) await first.join(room);
  first.terminate();
  await first.closed;
  const ws = await connect(srv, t);
  await ws.login(name, PASSWORD);
  return { name, ws };
}

const loginLine = (name) => `/login ${name} ${PASSWORD}`;

test('a registered login joins general, then each saved room by name with its notice; general stays current', async (t) => {
  const base = uniqRoom('tj');
  const rooms = [`${base}-b`, 'general', `${base}-a`];
  const { name } = await savedUser(server, t, rooms);
  const tn = await telnetLogin(server, t, name, { line: loginLine(name) });
  assert.match(tn.notice, new RegExp(`^\\* ${esc(name)} joined #general \\(\\d+ online\\)\\. /help lists commands\\.$`));
  assert.equal(await tn.nextLine(/^\*/), `* You joined #${base}-a (1 online).`);
  assert.equal(await tn.nextLine(/^\*/), `* You joined #${base}-b (1 online).`);
  tn.send('hello from telnet');
  const { before: earlier } = await tn.until(`[#general] ${name}: hello from telnet`);
  assert.deepEqual(earlier.filter((l) => /^[*!]/.test(l)), [], 'no other notice, and no second join of general');
  tn.assertCrlf();
});

test('a guest joins general only', async (t) => {
  const name = uniq('tg');
  const tn = await telnetLogin(server, t, name);
  tn.send('/rooms');
  const { before: earlier } = await tn.until('* Rooms:');
  assert.deepEqual(earlier.filter((l) => l.startsWith('* You joined')), []);
});

test('a refusal prints its "! " line and the rest go on; with general refused the first saved room is current', async (t) => {
  // Two saved rooms fill --max-rooms 2, so general (not saved) is refused (rule 67).
  const srv = await serverForTest(t, ['--max-rooms', '2']);
  const base = uniqRoom('tr');
  const { name } = await savedUser(srv, t, [`${base}-a`, `${base}-b`]);
  const tn = await TelnetClient.connect(srv, `telnet ${name}`);
  t.after(() => tn.destroy());
  await tn.waitPrompt(/\S/, undefined, 'the name prompt');
  tn.send(loginLine(name));
  assert.equal(await tn.nextLine(/^[*!]/), '! too_many_rooms: you keep as many rooms as a connection may join: leave one first');
  assert.equal(await tn.nextLine(/^[*!]/), `* ${name} joined #${base}-a (1 online). /help lists commands.`);
  assert.equal(await tn.nextLine(/^[*!]/), `* You joined #${base}-b (1 online).`);
  tn.send('to the first saved room');
  await tn.nextLine(`[#${base}-a] ${name}: to the first saved room`);
  tn.assertCrlf();
});

test('a leave on another connection: a "* " notice, and the most recently joined room becomes current (rules 36, 67)', async (t) => {
  const base = uniqRoom('tl');
  const { name, ws } = await savedUser(server, t, [`${base}-a`, `${base}-b`]);
  const tn = await telnetLogin(server, t, name, { line: loginLine(name) });
  await tn.nextLine(`* You joined #${base}-a (1 online).`);
  await tn.nextLine(`* You joined #${base}-b (1 online).`);
  tn.send(`/room ${base}-a`);
  await tn.nextLine(`* Now talking in #${base}-a.`);
  await ws.leave(`${base}-a`);
  assert.equal(await tn.nextLine(/^[*!]/), `* You left #${base}-a on another connection.`);
  tn.send('where am i');
  await tn.nextLine(`[#${base}-b] ${name}: where am i`);
  // Leaving a room that is not current keeps the current one.
  await ws.leave('general');
  assert.equal(await tn.nextLine(/^[*!]/), '* You left #general on another connection.');
  tn.send('still b');
  await tn.nextLine(`[#${base}-b] ${name}: still b`);
  await ws.leave(`${base}-b`);
  assert.equal(await tn.nextLine(/^[*!]/), `* You left #${base}-b on another connection.`);
  tn.send('nowhere');
  assert.equal(await tn.nextLine(/^!/), '! not_member: you are in no room; /join one');
  tn.assertCrlf();
});

test('telnet moves a registered user\'s read marker to the last seq it showed (rule 78)', async (t) => {
  const room = uniqRoom('tm');
  const { name, ws } = await savedUser(server, t, [room]);
  const other = await user(server, t);
  await other.join(room);
  const tn = await telnetLogin(server, t, name, { line: loginLine(name) });
  await tn.nextLine(`* You joined #${room} (2 online).`);
  await other.say(room, 'one');
  await tn.nextLine(`[#${room}] ${other.name}: one`);
  assert.deepEqual(await ws.next((m) => m.type === 'read'), { type: 'read', room, seq: 1 }, 'the first shown is written at once');
  await other.say(room, 'two');
  await other.say(room, 'three');
  await tn.nextLine(`[#${room}] ${other.name}: three`);
  // Within 5 s of the last write the rest waits; then the marker is the last seq shown.
  const seen = [];
  for (;;) {
    const r = await ws.next((m) => m.type === 'read', 15000, 'the marker of what telnet showed');
    assert.equal(r.room, room);
    seen.push(r.seq);
    if (r.seq === 3) break;
  }
  assert.ok(seen.every((s) => s === 2 || s === 3), `markers ${seen}`);
  const w = await (await connect(server, t)).login(name, PASSWORD);
  assert.deepEqual(w.rooms.find((r) => r.name === room), { name: room, seq: 3, read: 3, unread: 0, mentions: 0 });
});

test('a telnet guest writes no marker and shows no error for what it is shown', async (t) => {
  const name = uniq('tq');
  const tn = await telnetLogin(server, t, name);
  const room = uniqRoom();
  const other = await user(server, t);
  await other.join(room);
  tn.send(`/join ${room}`);
  await tn.nextLine(`* You joined #${room} (2 online).`);
  await other.say(room, 'hi guest');
  await other.say(room, 'bye guest');
  const { before: earlier } = await tn.until(`[#${room}] ${other.name}: bye guest`);
  assert.deepEqual(earlier.filter((l) => l.startsWith('!')), []);
});
