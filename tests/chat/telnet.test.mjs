// Telnet line protocol, byte-exact: greeting and prompts, password echo off, commands, output
// formats, errors, line editing and limits, IAC handling.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { readFileSync } from 'node:fs';
import { PASSWORD, connect, dmRoom, eventually, guest, ms, openRoom, uniq, uniqRoom, user } from './lib/chat.mjs';
import {
  DO,
  IAC,
  OPT_ECHO,
  OPT_NAWS,
  OPT_SGA,
  SB,
  SE,
  TelnetClient,
  WILL,
  esc,
  telnetLogin,
} from './lib/telnet.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

const msgLine = (room, from, text) => `[#${room}] ${from}: ${text}`;

// A WebSocket user joined to `room`, to watch what telnet users send.
async function watcher(t, room = 'general') {
  const w = await user(server, t);
  await w.join(room);
  return w;
}

// Sends a line and waits for its echo "[#room] name: text" on the same telnet connection.
async function say(c, room, text) {
  await c.send(text);
  return c.nextLine(msgLine(room, c.name, text), undefined, `the echo of ${JSON.stringify(text)}`);
}

test('greeting asks for a name without a newline; after the name the line is ended; join notice', async (t) => {
  const own = await startChatServer();
  t.after(() => own.dispose());
  const c = await TelnetClient.connect(own, 'first');
  t.after(() => c.destroy());
  const prompt = await c.waitPrompt(/name/i, undefined, 'a prompt asking for a name');
  assert.ok(!prompt.endsWith('\n'));
  const promptLines = c.lines.length;
  const name = uniq('Tel');
  await c.send(name);
  const notice = await c.nextLine(/^\* /, undefined, 'the join notice');
  assert.match(notice, new RegExp(`^\\* ${esc(name)} joined #general \\(1 online\\)`));
  // The prompt's line was ended (by CR LF) before the notice.
  assert.ok(c.lines.length >= promptLines + 2);
  assert.ok(c.lines[promptLines].text.includes(prompt.trim()), `the prompt line ${JSON.stringify(c.lines[promptLines].text)}`);
  const second = await telnetLogin(own, t, uniq('Tel'));
  assert.equal(second.online, 2, '(N online) counts the users in #general');
  c.assertCrlf();
  second.assertCrlf();
});

test('(N online) counts users, not connections, and includes WebSocket users in #general', async (t) => {
  const own = await startChatServer();
  t.after(() => own.dispose());
  const w = await user(own, t);
  await w.join('general');
  const w2 = await connect(own, t);
  await w2.loginToken(w.token);
  await w2.join('general');
  const c = await telnetLogin(own, t, uniq('Tel'));
  assert.equal(c.online, 2);
});

test('a plain line goes to the current room: "[#general] alice: text" for everyone, sender included', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await say(c, 'general', 'hello from telnet');
  const m = await w.nextMessage('general', (x) => x.from === c.name);
  assert.equal(m.text, 'hello from telnet');
  await w.say('general', 'hello from the web');
  await c.nextLine(msgLine('general', w.name, 'hello from the web'));
  c.assertCrlf();
});

test('every output line ends in CR LF', async (t) => {
  const c = await telnetLogin(server, t, uniq('Tel'));
  const room = await openRoom(server, t);
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`^\\* .*#${room}`));
  for (const line of ['/help', '/who', '/rooms', 'text', '/history 5', '/nosuchcommand', `/room general`]) {
    await c.send(line);
  }
  await c.nextLine(/^! /, undefined, 'the error for /nosuchcommand');
  await c.nextLine(/^\[#.*: text$/);
  await c.send('/quit');
  await c.waitClosed();
  c.assertCrlf();
  assert.ok(c.lines.length > 5);
  // No bare LF anywhere in the byte stream.
  const bytes = c.rawBytes();
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0a) assert.equal(bytes[i - 1], 0x0d, `bare LF at byte ${i}`);
  }
});

test('/join ROOM joins and makes it current; /room switches; plain lines follow the current room', async (t) => {
  const r1 = await openRoom(server, t);
  const r2 = await openRoom(server, t);
  const w1 = await watcher(t, r1);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${r1}`);
  await c.nextLine(new RegExp(`^\\* .*#${r1}`), undefined, 'the /join notice');
  await say(c, r1, 'in r1');
  assert.equal((await w1.nextMessage(r1, (m) => m.from === c.name)).text, 'in r1');
  await c.send(`/join ${r2}`);
  await c.nextLine(new RegExp(`^\\* .*#${r2}`));
  await say(c, r2, 'in r2');
  await c.send(`/room ${r1}`);
  await c.nextLine(new RegExp(`^\\* .*#${r1}`), undefined, 'the /room notice');
  await say(c, r1, 'back in r1');
  await c.send('/room general');
  await c.nextLine(/^\* .*#general/);
  await say(c, 'general', 'in general');
  c.assertCrlf();
});

test('lines are handled in order: a line typed right after /join goes to the joined room', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.write(Buffer.from(`/join ${room}\r\npasted right after the join\r\n`));
  await c.nextLine(msgLine(room, c.name, 'pasted right after the join'), undefined, 'the pasted line in the joined room');
  assert.equal((await w.nextMessage(room, (m) => m.from === c.name)).text, 'pasted right after the join');
  await c.write(Buffer.from(`/room general\r\n/leave general\r\n/who\r\n`));
  await c.nextLine(/^\* .*#general/);
});

test('lines typed right after the name (before the join notice) are not lost', async (t) => {
  const w = await watcher(t);
  const c = await TelnetClient.connect(server, 'typeahead');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  const name = uniq('Fast');
  await c.write(Buffer.from(`${name}\r\ntyped ahead\r\n`));
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`));
  await c.nextLine(msgLine('general', name, 'typed ahead'), undefined, 'the line typed ahead of the login');
  assert.equal((await w.nextMessage('general', (m) => m.from === name)).text, 'typed ahead');
});

test('/join with an invalid name → "! bad_name: ..."; /room of a room not joined → "! not_member: ..."', async (t) => {
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send('/join bad!room');
  await c.nextLine(/^! bad_name: \S/);
  await c.send(`/room ${uniqRoom()}`);
  await c.nextLine(/^! not_member: \S/);
  c.assertCrlf();
});

test('/join of a room adds presence for the others; /leave gives offline (shown as "* " lines)', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  assert.deepEqual(await w.next((m) => m.type === 'presence'), { type: 'presence', room, user: c.name, state: 'online' });
  const other = await telnetLogin(server, t, uniq('Tel'));
  await other.send(`/join ${room}`);
  await c.nextLine(new RegExp(`^\\* .*${esc(other.name)}.*#${room}`), undefined, 'presence of the other telnet user');
  await other.send(`/leave ${room}`);
  await c.nextLine(new RegExp(`^\\* .*${esc(other.name)}.*#${room}`), undefined, 'offline of the other telnet user');
  await c.send(`/leave ${room}`);
  assert.deepEqual(await w.next((m) => m.type === 'presence' && m.user === c.name), { type: 'presence', room, user: c.name, state: 'offline' });
});

test('rule 36: after /leave of the current room the most recently joined remaining room is current; none → ! not_member', async (t) => {
  const a = await openRoom(server, t);
  const b = await openRoom(server, t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${a}`);
  await c.nextLine(new RegExp(`#${a}`));
  await c.send(`/join ${b}`);
  await c.nextLine(new RegExp(`#${b}`));
  await c.send('/room general');
  await c.nextLine(/#general/);
  await c.send(`/room ${b}`);
  await c.nextLine(new RegExp(`#${b}`));
  await c.send('/leave');
  await c.nextLine(new RegExp(`^\\* .*#${b}`), undefined, 'the /leave notice');
  await say(c, a, 'now in a'); // a was joined after general
  await c.send('/leave');
  await c.nextLine(new RegExp(`^\\* .*#${a}`));
  await say(c, 'general', 'now in general');
  await c.send('/leave');
  await c.nextLine(/^\* .*#general/);
  await c.send('into the void');
  await c.nextLine(/^! not_member: \S/, undefined, 'not_member with no room');
  await c.send(`/join ${a}`);
  await c.nextLine(new RegExp(`#${a}`));
  await say(c, a, 'back');
  c.assertCrlf();
});

test('/leave ROOM of a room not joined → "! not_member: ..."', async (t) => {
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/leave ${uniqRoom()}`);
  await c.nextLine(/^! not_member: \S/);
});

test('/msg USER TEXT → "[dm] sender -> recipient: text" on both sides; the WebSocket side gets a dm message', async (t) => {
  const a = await telnetLogin(server, t, uniq('TelA'));
  const b = await telnetLogin(server, t, uniq('TelB'));
  const w = await user(server, t);
  await a.send(`/msg ${b.name} hi there`);
  const line = `[dm] ${a.name} -> ${b.name}: hi there`;
  await a.nextLine(line, undefined, 'the dm line on the sender side');
  await b.nextLine(line, undefined, 'the dm line on the recipient side');
  await a.send(`/msg ${w.name.toUpperCase()} to the web`);
  await a.nextLine(`[dm] ${a.name} -> ${w.name}: to the web`);
  const m = await w.nextMessage(dmRoom(a.name, w.name));
  assert.equal(m.text, 'to the web');
  assert.equal(m.from, a.name);
  await w.dm(a.name, 'from the web');
  await a.nextLine(`[dm] ${w.name} -> ${a.name}: from the web`);
  a.assertCrlf();
  b.assertCrlf();
});

test('/msg errors: unknown user → ! no_such_user; oneself → ! bad_request; bad name → ! bad_name', async (t) => {
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/msg ${uniq('ghost')} hello`);
  await c.nextLine(/^! no_such_user: \S/);
  await c.send(`/msg ${c.name} hello me`);
  await c.nextLine(/^! bad_request: \S/);
  await c.send('/msg bad!name hello');
  await c.nextLine(/^! bad_name: \S/);
});

test('/who, /rooms and /help answer "* " lines naming what they list', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`#${room}`));
  c.discardLines();
  await c.send('/who');
  const who = await c.nextLine(new RegExp(`^\\* .*${esc(w.name)}`), undefined, '/who naming the other member');
  assert.ok(who.includes(c.name) || c.pendingLines().some((l) => l.includes(c.name)), `/who does not list ${c.name}`);
  await c.send('/who general');
  await c.nextLine(new RegExp(`^\\* .*${esc(c.name)}`), undefined, '/who general');
  await c.send('/rooms');
  await c.nextLine(new RegExp(`^\\* .*#?${room}\\b`), undefined, '/rooms naming the room');
  await c.send('/help');
  await c.nextLine(/^\* .*\/join/, undefined, '/help mentioning /join');
  for (const l of c.pendingLines()) assert.match(l, /^\* /, `a non-"* " line in /who, /rooms, /help output: ${l}`);
  c.assertCrlf();
});

test('a crowded room: the join line counts everyone; /who names 50, says how many more, in one CR LF line', async (t) => {
  const room = await openRoom(server, t);
  const crowd = [];
  for (let i = 0; i < 64; i += 16) {
    const batch = await Promise.all(Array.from({ length: 16 }, () => guest(server, t)));
    await Promise.all(batch.map((g) => g.join(room)));
    crowd.push(...batch);
  }
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`^\\* You joined #${room} \\(65 online\\)\\.$`), undefined, 'the join line with the count');
  await c.send('/who');
  const who = await c.nextLine(new RegExp(`^\\* In #${room}: `), undefined, '/who of the crowded room');
  const m = /^\* In #[^:]+: (.*) and (\d+) more$/.exec(who);
  assert.ok(m, `/who does not end with "and N more": ${who}`);
  const names = m[1].split(', ');
  assert.equal(names.length, 50, `/who names ${names.length} members`);
  assert.equal(Number(m[2]), 15);
  const members = new Set([c.name, ...crowd.map((g) => g.name)]);
  for (const n of names) assert.ok(members.has(n), `/who names ${n}, who is not in the room`);
  assert.equal(new Set(names).size, names.length, 'a name listed twice');
  c.assertCrlf();
});

test('/rooms does not list dm rooms', async (t) => {
  const a = await telnetLogin(server, t, uniq('Tel'));
  const b = await user(server, t);
  await a.send(`/msg ${b.name} psst`);
  await a.nextLine(/^\[dm\]/);
  a.discardLines();
  await a.send('/rooms');
  await a.nextLine(/#general/);
  await a.send('/help');
  const { before } = await a.until(/\/join/);
  assert.deepEqual(before.filter((l) => /dm:/.test(l)), []);
});

test('/history [N]: default 20, N lines, as normal message lines; N outside 1..200 → ! bad_request', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  for (let i = 1; i <= 25; i++) await w.say(room, `h${i}`);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`#${room}`));
  c.discardLines();
  await c.send('/history');
  const got = [];
  for (let i = 0; i < 20; i++) got.push(await c.nextLine(/^\[#/, undefined, `history line ${i + 1} of 20`));
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => msgLine(room, w.name, `h${i + 6}`)));
  await c.send('/history 3');
  const three = [];
  for (let i = 0; i < 3; i++) three.push(await c.nextLine(/^\[#/));
  assert.deepEqual(three, [23, 24, 25].map((i) => msgLine(room, w.name, `h${i}`)), '/history 20 gave more than 20 lines, or /history 3 wrong');
  await c.send('/history 200');
  const all = [];
  for (let i = 0; i < 25; i++) all.push(await c.nextLine(/^\[#/));
  assert.deepEqual(all, Array.from({ length: 25 }, (_, i) => msgLine(room, w.name, `h${i + 1}`)));
  for (const n of ['0', '201', '-1', 'abc']) {
    await c.send(`/history ${n}`);
    await c.nextLine(/^! bad_request: \S/, undefined, `! bad_request for /history ${n}`);
  }
  assert.deepEqual(c.pendingLines().filter((l) => l.startsWith('[#')), [], 'extra history lines');
  c.assertCrlf();
});

test('multi-line texts from WebSocket show continuation lines indented by two spaces', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`#${room}`));
  await w.say(room, 'first line\nsecond line\n\tthird');
  const match = await c.nextLine(msgLine(room, w.name, 'first line'));
  const i = c.lines.findIndex((l) => l.text === match);
  assert.deepEqual(c.lines.slice(i + 1, i + 3).map((l) => l.text), ['  second line', '  \tthird']);
  c.assertCrlf();
});

test('bidi overrides, isolates and line/paragraph separators in a text are shown as "?" on telnet', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`#${room}`));
  const text = 'pay \u202eemordnilap\u202c to \u2066x\u2069 now\u2028or\u2029later \u200f\u00e9';
  await w.say(room, text);
  // The web keeps the text as sent; telnet neutralises every reordering character.
  await c.nextLine(msgLine(room, w.name, 'pay ?emordnilap? to ?x? now?or?later \u200f\u00e9'));
  const h = await w.expect({ type: 'history', room }, 'history');
  assert.equal(h.messages.at(-1).text, text);
  // /history shows the same neutral line.
  await c.send('/history 1');
  await c.nextLine(msgLine(room, w.name, 'pay ?emordnilap? to ?x? now?or?later \u200f\u00e9'));
});

test('typing is never shown on telnet', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await c.nextLine(new RegExp(`#${room}`));
  await w.next((m) => m.type === 'presence');
  c.discardLines();
  await w.send({ type: 'typing', room });
  await w.say(room, 'after typing');
  const { before } = await c.until(msgLine(room, w.name, 'after typing'));
  assert.deepEqual(before, [], 'something was shown for typing');
});

test('"//text" sends "/text"', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send('//shrug not a command');
  await c.nextLine(msgLine('general', c.name, '/shrug not a command'));
  assert.equal((await w.nextMessage('general', (m) => m.from === c.name)).text, '/shrug not a command');
});

test('CR LF, CR NUL and LF all end a line', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.write(Buffer.from('one\r\ntwo\r\0three\nfour\r\n'));
  const texts = [];
  for (let i = 0; i < 4; i++) texts.push((await w.nextMessage('general', (m) => m.from === c.name)).text);
  assert.deepEqual(texts, ['one', 'two', 'three', 'four']);
});

test('backspace and DEL edit the line', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.write(Buffer.from('helx\bp\r\n'));
  await c.write(Buffer.from('abcd\x7f\x7fxy\r\n'));
  await c.write(Buffer.from('héé\x7f!\r\n'));
  const texts = [];
  for (let i = 0; i < 3; i++) texts.push((await w.nextMessage('general', (m) => m.from === c.name)).text);
  assert.deepEqual(texts, ['help', 'abxy', 'hé!']);
});

test('empty lines are ignored', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  c.discardLines();
  await c.write(Buffer.from('\r\n\r\n\n'));
  await c.send('after empties');
  const { before } = await c.until(msgLine('general', c.name, 'after empties'));
  assert.deepEqual(before.filter((l) => l.startsWith('!') || l.startsWith('[')), []);
  const m = await w.nextMessage('general', (x) => x.from === c.name);
  assert.equal(m.text, 'after empties');
});

test('IAC negotiation sent by the client never appears as text', async (t) => {
  const w = await watcher(t);
  const c = await TelnetClient.connect(server, 'iac');
  t.after(() => c.destroy());
  // Negotiation before the name, inside the name line, and inside a chat line.
  await c.write(Buffer.from([IAC, WILL, OPT_NAWS, IAC, SB, OPT_NAWS, 0, 80, 0, 24, IAC, SE, IAC, DO, OPT_SGA]));
  await c.waitPrompt(/name/i);
  const name = uniq('Iac');
  await c.write(Buffer.concat([Buffer.from(name.slice(0, 3)), Buffer.from([IAC, DO, OPT_ECHO]), Buffer.from(name.slice(3)), Buffer.from('\r\n')]));
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`));
  c.name = name;
  await c.write(
    Buffer.concat([
      Buffer.from('hel'),
      Buffer.from([IAC, WILL, OPT_SGA]),
      Buffer.from('lo'),
      Buffer.from([IAC, SB, OPT_NAWS, 0, 100, 0, 40, IAC, SE]),
      Buffer.from(' world'),
      Buffer.from([IAC, 241]), // NOP
      Buffer.from('\r\n'),
    ]),
  );
  const m = await w.nextMessage('general', (x) => x.from === name);
  assert.equal(m.text, 'hello world');
  await c.nextLine(msgLine('general', name, 'hello world'));
});

test('a line over 4 KiB → "! too_long: ..." and the line is dropped; the connection stays', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send('z'.repeat(5000));
  await c.nextLine(/^! too_long: \S/);
  await c.send('q'.repeat(10000));
  await c.nextLine(/^! too_long: \S/);
  await say(c, 'general', 'still here');
  const m = await w.nextMessage('general', (x) => x.from === c.name);
  assert.equal(m.text, 'still here', 'a too-long line (or part of it) was sent');
  // 4000 characters fit in a line.
  await say(c, 'general', 'k'.repeat(4000));
  assert.equal((await w.nextMessage('general', (x) => x.from === c.name)).text, 'k'.repeat(4000));
});

test('invalid UTF-8 → "! bad_request: ..."; the connection stays', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.write(Buffer.concat([Buffer.from('bad '), Buffer.from([0xc3, 0x28]), Buffer.from('\r\n')]));
  await c.nextLine(/^! bad_request: \S/);
  await c.write(Buffer.concat([Buffer.from('lone '), Buffer.from([0x80]), Buffer.from('\r\n')]));
  await c.nextLine(/^! bad_request: \S/);
  await c.write(Buffer.concat([Buffer.from('overlong '), Buffer.from([0xc0, 0xaf]), Buffer.from('\r\n')]));
  await c.nextLine(/^! bad_request: \S/);
  await say(c, 'general', 'valid ü');
  assert.equal((await w.nextMessage('general', (x) => x.from === c.name)).text, 'valid ü');
});

test('control characters and escape sequences → "! bad_request: ..." (rule 41); tabs are allowed', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  for (const bytes of ['red \x1b[31mtext', 'bell\x07', 'nul\x01x', 'c1 \u009b31m', 'esc\x1b]0;title\x07']) {
    await c.write(Buffer.from(`${bytes}\r\n`, 'utf8'));
    await c.nextLine(/^! bad_request: \S/, undefined, `bad_request for ${JSON.stringify(bytes)}`);
  }
  await say(c, 'general', 'tab\there');
  const m = await w.nextMessage('general', (x) => x.from === c.name);
  assert.equal(m.text, 'tab\there', 'a rejected line was sent');
});

test('trailing white space is trimmed on telnet too', async (t) => {
  const w = await watcher(t);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send('spaces after   \t');
  assert.equal((await w.nextMessage('general', (x) => x.from === c.name)).text, 'spaces after');
});

test('bad_name at the name prompt → "! bad_name: ..." and the prompt again', async (t) => {
  const c = await TelnetClient.connect(server, 'badname');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  await c.send('not a name!');
  await c.nextLine(/^! bad_name: \S/);
  await c.waitPrompt(/name/i, undefined, 'the name prompt again');
  await c.send('x'.repeat(33));
  await c.nextLine(/^! bad_name: \S/);
  await c.waitPrompt(/name/i);
  const name = uniq('Ok');
  await c.send(name);
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`));
  c.assertCrlf();
});

test('name_taken at the name prompt (an online guest) → "! name_taken: ..." and the prompt again', async (t) => {
  const g = await telnetLogin(server, t, uniq('Held'));
  const c = await TelnetClient.connect(server, 'taken');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  await c.send(g.name.toLowerCase());
  await c.nextLine(/^! name_taken: \S/);
  await c.waitPrompt(/name/i, undefined, 'the name prompt again');
  const name = uniq('Free');
  await c.send(name);
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`));
});

// Connects and registers `name` over WebSocket; returns the password.
async function registerWs(t, name) {
  const c = await connect(server, t);
  await c.register(name);
  return PASSWORD;
}

test('a registered name at the prompt → "Password:" with IAC WILL ECHO; after it IAC WONT ECHO; not echoed', async (t) => {
  const name = uniq('Reg');
  const pw = await registerWs(t, name);
  const c = await TelnetClient.connect(server, 'pw');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  const negotiationsBefore = c.negotiations.length;
  await c.send(name.toLowerCase());
  await c.waitPrompt(/password/i, undefined, 'the Password: prompt');
  const sinceName = c.negotiations.slice(negotiationsBefore);
  assert.ok(sinceName.some((n) => n.cmd === 'WILL' && n.opt === OPT_ECHO), `no IAC WILL ECHO before the password: ${JSON.stringify(sinceName)}`);
  const rawBefore = c.rawBytes().length;
  await c.send(pw);
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`), undefined, 'the join notice in registered spelling');
  const after = c.negotiations.slice(negotiationsBefore);
  const willAt = after.findIndex((n) => n.cmd === 'WILL' && n.opt === OPT_ECHO);
  assert.ok(after.slice(willAt + 1).some((n) => n.cmd === 'WONT' && n.opt === OPT_ECHO), 'no IAC WONT ECHO after the password');
  assert.ok(!c.rawBytes().subarray(rawBefore).includes(Buffer.from(pw)), 'the password was echoed');
  // Byte-exact: FF FB 01 and FF FC 01 are in the stream.
  assert.ok(c.rawBytes().includes(Buffer.from([0xff, 0xfb, 0x01])));
  assert.ok(c.rawBytes().includes(Buffer.from([0xff, 0xfc, 0x01])));
  c.assertCrlf();
});

test('three wrong passwords → "! bad_credentials: ..." and the name prompt again', async (t) => {
  const name = uniq('Reg');
  const pw = await registerWs(t, name);
  const c = await TelnetClient.connect(server, 'wrongpw');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  await c.send(name);
  for (let i = 1; i <= 3; i++) {
    await c.waitPrompt(/password/i, undefined, `Password: prompt #${i}`);
    await c.send(`wrong-password-${i}`);
  }
  await c.nextLine(/^! bad_credentials: \S/);
  await c.waitPrompt(/name/i, undefined, 'the name prompt after three wrong passwords');
  // A right answer now works.
  await c.send(name);
  await c.waitPrompt(/password/i);
  await c.send(pw);
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`));
});

test('/login NAME PASSWORD at the prompt logs in; /login after login → "! already_logged_in: ..."', async (t) => {
  const name = uniq('Reg');
  const pw = await registerWs(t, name);
  const c = await telnetLogin(server, t, name, { line: `/login ${name.toUpperCase()} ${pw}` });
  await c.send(`/login ${name} ${pw}`);
  await c.nextLine(/^! already_logged_in: \S/);
  const g = await telnetLogin(server, t, uniq('Tel'));
  await g.send(`/login ${name} ${pw}`);
  await g.nextLine(/^! already_logged_in: \S/);
  // A wrong /login at the prompt → ! bad_credentials and the prompt again.
  const d = await TelnetClient.connect(server, 'badlogin');
  t.after(() => d.destroy());
  await d.waitPrompt(/name/i);
  await d.send(`/login ${name} not-the-password`);
  await d.nextLine(/^! bad_credentials: \S/);
  await d.waitPrompt(/name/i);
});

test('/register PASSWORD registers the current guest name; WebSocket login with it works', async (t) => {
  const c = await telnetLogin(server, t, uniq('Guest'));
  await c.send('/register telnet-pass-1');
  // Its own notice, not any "* " line: another user's presence line may come first.
  await c.nextLine(new RegExp(`^\\* ${esc(c.name)} is registered\\.`), undefined, 'the notice for /register');
  const w = await connect(server, t);
  const welcome = await w.login(c.name, 'telnet-pass-1');
  assert.equal(welcome.guest, false);
  await c.send('/register again-pass-2');
  await c.nextLine(/^! already_logged_in: \S/);
});

test('/register with a short password → "! bad_request: ..."', async (t) => {
  const c = await telnetLogin(server, t, uniq('Guest'));
  await c.send('/register short');
  await c.nextLine(/^! bad_request: \S/);
});

test('/register without an argument asks for the password with echo off', async (t) => {
  const c = await telnetLogin(server, t, uniq('Guest'));
  const n0 = c.negotiations.length;
  await c.send('/register');
  await c.waitPrompt(/password/i, undefined, 'a password prompt for /register');
  assert.ok(c.negotiations.slice(n0).some((n) => n.cmd === 'WILL' && n.opt === OPT_ECHO), 'no IAC WILL ECHO');
  await c.send('prompted-pass-1');
  await c.nextLine(new RegExp(`^\\* ${esc(c.name)} is registered\\.`), undefined, 'the notice for /register');
  assert.ok(c.negotiations.slice(n0).some((n) => n.cmd === 'WONT' && n.opt === OPT_ECHO), 'no IAC WONT ECHO');
  const w = await connect(server, t);
  assert.equal((await w.login(c.name, 'prompted-pass-1')).guest, false);
});

test('/quit closes the connection; the others see the user leave', async (t) => {
  const room = uniqRoom();
  const w = await watcher(t, room);
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send(`/join ${room}`);
  await w.next((m) => m.type === 'presence' && m.state === 'online');
  await c.send('/quit');
  await c.waitClosed();
  assert.deepEqual(await w.next((m) => m.type === 'presence'), { type: 'presence', room, user: c.name, state: 'offline' });
});

test('an unknown command → an "! " error line, and the connection stays', async (t) => {
  const c = await telnetLogin(server, t, uniq('Tel'));
  await c.send('/frobnicate now');
  await c.nextLine(/^! [a-z_]+: \S/);
  await say(c, 'general', 'still fine');
});

test('telnet\'s automatic general counts toward --max-rooms (rule 10)', async (t) => {
  const own = await startChatServer(['--max-rooms', '3']);
  t.after(() => own.dispose());
  const c = await telnetLogin(own, t, uniq('Tel'));
  const rooms = [await openRoom(own, t), await openRoom(own, t), await openRoom(own, t)];
  await c.send(`/join ${rooms[0]}`);
  await c.nextLine(new RegExp(`^\\* .*#${rooms[0]}`));
  await c.send(`/join ${rooms[1]}`);
  await c.nextLine(new RegExp(`^\\* .*#${rooms[1]}`));
  await c.send(`/join ${rooms[2]}`);
  await c.nextLine(/^! too_many_rooms: \S/);
});

test('the send rate limit applies to telnet lines: --rate-limit 4 → the 5th rapid line waits for a token (rule 79; more in telnet_queue.test.mjs)', async (t) => {
  const own = await startChatServer(['--rate-limit', '4']);
  t.after(() => own.dispose());
  const c = await telnetLogin(own, t, uniq('Tel'));
  c.discardLines();
  const texts = ['one', 'two', 'three', 'four', 'five'];
  await c.write(Buffer.from(texts.map((x) => `${x}\r\n`).join('')));
  const { before } = await c.until(msgLine('general', c.name, 'five'));
  assert.deepEqual(before, texts.slice(0, 4).map((x) => msgLine('general', c.name, x)));
});

test('--telnet-login-timeout 1: no name → a "* " notice and close', async (t) => {
  const own = await startChatServer(['--telnet-login-timeout', '1']);
  t.after(() => own.dispose());
  const c = await TelnetClient.connect(own, 'slowpoke');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  await c.nextLine(/^\* /, ms(5000), 'the login deadline notice');
  await c.waitClosed(ms(5000));
  c.assertCrlf();
});

test('--telnet-idle 1: a logged-in telnet user who sends nothing is disconnected', async (t) => {
  const own = await startChatServer(['--telnet-idle', '1']);
  t.after(() => own.dispose());
  const c = await telnetLogin(own, t, uniq('Tel'));
  await c.waitClosed(ms(6000), 'the idle close');
});

test('without --telnet-idle, a telnet user idle for longer than the WebSocket login deadline stays', async (t) => {
  const own = await startChatServer(['--login-timeout', '1']);
  t.after(() => own.dispose());
  const c = await telnetLogin(own, t, uniq('Tel'));
  const ws = await connect(own, t);
  await ws.waitClosed(ms(6000), 'the WebSocket login deadline');
  await say(c, 'general', 'still connected');
});

// The server's end of a loopback TCP connection in /proc/net/tcp: its timer kind and due time.
// (Columns: sl local rem st tx:rx tr:when ...; tr 2 is the keepalive timer, 0 none.)
function serverSocketTimer(serverPort, clientPort) {
  const hex = (n) => n.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || !f[1].endsWith(`:${hex(serverPort)}`) || !f[2].endsWith(`:${hex(clientPort)}`)) continue;
    const [tr, when] = f[5].split(':');
    return { timer: Number.parseInt(tr, 16), dueJiffies: Number.parseInt(when, 16) };
  }
  return null;
}

test('rule 33: TCP keepalive is on for telnet connections, so dead peers are found without an idle timeout', async (t) => {
  const c = await telnetLogin(server, t, uniq('Tel'));
  let last;
  await eventually(() => {
    last = serverSocketTimer(server.telnetPort, c.socket.localPort);
    return last?.timer === 2;
  }, ms(5000), 'the keepalive timer on the server side of an idle telnet connection');
  assert.ok(last.dueJiffies > 0, JSON.stringify(last));
  // The probe timer does not disturb the session.
  await c.send('/rooms');
  await c.nextLine(/^\* Rooms:/);
});
