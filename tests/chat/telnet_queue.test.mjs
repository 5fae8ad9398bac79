// Telnet input under the rate limit (rules 79, 80), byte-exact: a pasted burst waits for tokens
// and goes in order, the (N+1)th waiting line is refused, /quit never waits, Ctrl-C (IAC IP or a
// raw 0x03) drops the line being typed and every waiting line, at the prompts too; and /me
// actions both ways between telnet and WebSocket users.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { PASSWORD, ms, uniq, user } from './lib/chat.mjs';
import { IAC, OPT_ECHO, TelnetClient, esc, telnetLogin } from './lib/telnet.mjs';

const IP = 244;
const ipBytes = Buffer.from([IAC, IP]);
const msgLine = (room, from, text) => `[#${room}] ${from}: ${text}`;
// Lines that wait for a token come seconds later: a bound on the wait, not a timing assertion.
const TOKEN_WAIT = ms(20000);
const lines = (texts) => Buffer.from(texts.map((x) => `${x}\r\n`).join(''));

async function server(t, args) {
  const s = await startChatServer(args);
  t.after(() => s.dispose());
  return s;
}

// A WebSocket user in #general, to see what arrives there and in which order.
async function watcher(s, t) {
  const w = await user(s, t);
  await w.join('general');
  return w;
}

// The texts of the next `n` messages from `from` in #general as the watcher gets them.
async function textsFrom(w, from, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await w.nextMessage('general', (m) => m.from === from, TOKEN_WAIT)).text);
  return out;
}

test('a pasted burst of more lines than the bucket holds waits for tokens and arrives whole, in order, without errors', async (t) => {
  // 20 tokens, 2 more a second: 24 lines in one write, the last 4 wait about 2 s in all.
  const s = await server(t, ['--rate-limit', '20']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  c.discardLines();
  const texts = Array.from({ length: 24 }, (_, i) => `burst line ${i + 1}`);
  await c.write(lines(texts));
  assert.deepEqual(await textsFrom(w, c.name, 24), texts);
  // The sender sees its own lines in the same order, with nothing in between (no rate_limited).
  const { before, match } = await c.until(msgLine('general', c.name, texts[23]), TOKEN_WAIT);
  assert.equal(match, msgLine('general', c.name, texts[23]));
  assert.deepEqual(before, texts.slice(0, 23).map((x) => msgLine('general', c.name, x)));
  c.assertCrlf();
});

test('lines behind a waiting line wait too, commands included, and run in order; /msg waits for a token', async (t) => {
  const s = await server(t, ['--rate-limit', '20']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  const room = uniq('r').toLowerCase();
  await w.join(room);
  const filler = Array.from({ length: 20 }, (_, i) => `fill ${i + 1}`);
  // The bucket is empty after the filler: the /msg waits (refused, were it not), the next line
  // waits behind it, and so does /join, which takes no token: had it run at once, "still general"
  // would have gone to the new room.
  await c.write(lines([...filler, `/msg ${w.name} psst`, 'still general', `/join ${room}`, 'in the new room']));
  const dm = await w.next((m) => m.type === 'message' && m.room.startsWith('dm:'), TOKEN_WAIT);
  assert.equal(dm.text, 'psst');
  assert.deepEqual(await textsFrom(w, c.name, 21), [...filler, 'still general']);
  const m = await w.nextMessage(room, (x) => x.from === c.name, TOKEN_WAIT);
  assert.equal(m.text, 'in the new room');
  assert.equal(await c.nextLine(/^\[dm\]/), `[dm] ${c.name} -> ${w.name}: psst`);
  const { before } = await c.until(msgLine(room, c.name, 'in the new room'), TOKEN_WAIT);
  assert.ok(before.includes(`* You joined #${room} (2 online).`), JSON.stringify(before));
  assert.ok(!before.some((l) => l.startsWith('! ')), JSON.stringify(before));
});

test('--telnet-queue N: the (N+1)th waiting line gets "! rate_limited: ..." and is dropped; the N run', async (t) => {
  const s = await server(t, ['--rate-limit', '20', '--telnet-queue', '3']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  const filler = Array.from({ length: 20 }, (_, i) => `fill ${i + 1}`);
  await c.write(lines([...filler, 'wait 1', 'wait 2', 'wait 3', 'refused 4']));
  const refusal = await c.nextLine(/^! /);
  assert.equal(refusal, '! rate_limited: 3 lines are waiting already; this one was dropped');
  // Once the queue has room again, a line is taken: it runs after the three.
  await c.nextLine(msgLine('general', c.name, 'wait 1'), TOKEN_WAIT);
  await c.send('later');
  const got = await textsFrom(w, c.name, 24);
  assert.deepEqual(got, [...filler, 'wait 1', 'wait 2', 'wait 3', 'later']);
});

test('--telnet-queue 0: nothing waits, a line over the rate limit is refused as before', async (t) => {
  const s = await server(t, ['--rate-limit', '2', '--telnet-queue', '0']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  await c.write(lines(['one', 'two', 'three']));
  assert.equal(await c.nextLine(/^! /), '! rate_limited: 0 lines are waiting already; this one was dropped');
  assert.deepEqual(await textsFrom(w, c.name, 2), ['one', 'two']);
  await w.say('general', 'marker');
  await w.nextMessage('general', (m) => m.text === 'marker');
  const h = await w.request({ type: 'history', room: 'general', limit: 10 });
  assert.deepEqual(h.messages.map((m) => m.text), ['one', 'two', 'marker']);
});

test('/quit never waits: it ends the session at once and the waiting lines are never sent', async (t) => {
  const s = await server(t, ['--rate-limit', '2']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  await c.write(lines(['one', 'two', 'three', 'four', '/quit']));
  await c.waitClosed();
  // The echoes of one and two may or may not make it before the close; "* Bye." is the last line.
  const got = c.pendingLines();
  assert.equal(got.at(-1), '* Bye.', JSON.stringify(got));
  assert.ok(!got.some((l) => /three|four|!/.test(l)), JSON.stringify(got));
  // Anything the session had sent would be stored before this marker, which follows the close.
  await w.say('general', 'marker');
  const h = await w.request({ type: 'history', room: 'general', limit: 10 });
  assert.deepEqual(
    h.messages.map((m) => m.text),
    ['one', 'two', 'marker'],
  );
  c.assertCrlf();
});

test('Ctrl-C (IAC IP) drops every waiting line with "* N waiting lines dropped"; later lines go on', async (t) => {
  // 4 tokens, one more every 2.5 s: the burst empties the bucket and nothing refills before the IP.
  const s = await server(t, ['--rate-limit', '4']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  const texts = ['a1', 'a2', 'a3', 'a4', 'w1', 'w2', 'w3'];
  await c.write(Buffer.concat([lines(texts), Buffer.from('half-typed'), ipBytes]));
  // The notice is written at once; the echoes of a1..a4 come back from the store, before or after.
  assert.equal(await c.nextLine(/^\* /), '* 3 waiting lines dropped');
  for (const x of texts.slice(0, 4)) await c.nextLine(msgLine('general', c.name, x));
  // The session goes on; the next line waits for the next token and is the next one sent.
  await c.send('after');
  await c.nextLine(msgLine('general', c.name, 'after'), TOKEN_WAIT);
  assert.deepEqual(await textsFrom(w, c.name, 5), ['a1', 'a2', 'a3', 'a4', 'after']);
  // One waiting line: the singular.
  await c.write(Buffer.concat([lines(['x1']), Buffer.from([0x03])]));
  assert.equal(await c.nextLine(/^\* /), '* 1 waiting line dropped');
  c.assertCrlf();
});

test('Ctrl-C mid-line discards what was typed, prints nothing without waiting lines, never closes; 0x03 is never text', async (t) => {
  const s = await server(t, ['--rate-limit', '0']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  const start = c.rawBytes().length;
  await c.write(Buffer.concat([Buffer.from('gone'), ipBytes, Buffer.from('kept one\r\n')]));
  await c.write(Buffer.from('also gone\x03kept two\r\n'));
  await c.write(Buffer.from('\x03\x03kept three\r\n'));
  assert.deepEqual(await textsFrom(w, c.name, 3), ['kept one', 'kept two', 'kept three']);
  await c.nextLine(msgLine('general', c.name, 'kept three'));
  // Byte-exact: only the three echoes came back, nothing for the interrupts.
  const wanted = ['kept one', 'kept two', 'kept three'].map((x) => `${msgLine('general', c.name, x)}\r\n`).join('');
  assert.equal(c.rawBytes().subarray(start).toString('utf8'), wanted);
});

test('Ctrl-C at the name prompt drops the name typed so far and asks again', async (t) => {
  const s = await server(t, []);
  const c = await TelnetClient.connect(s, 'ctrl-c at name');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  const start = c.rawBytes().length;
  await c.write(Buffer.concat([Buffer.from('Wrong'), ipBytes]));
  await c.waitPrompt(/^Your name\? $/, undefined, 'the name prompt again after IAC IP');
  await c.write(Buffer.from('Also\x03'));
  await c.waitPrompt(/^Your name\? $/, undefined, 'the name prompt again after 0x03');
  assert.equal(c.rawBytes().subarray(start).toString('utf8'), '\r\nYour name? \r\nYour name? ');
  const name = uniq('Tel');
  await c.send(name);
  await c.nextLine(new RegExp(`^\\* ${esc(name)} joined #general \\(\\d+ online\\)`));
  c.assertCrlf();
});

test('Ctrl-C at the password prompt drops the password typed so far and asks again, echo still off', async (t) => {
  const s = await server(t, []);
  const u = await user(s, t);
  const c = await TelnetClient.connect(s, 'ctrl-c at password');
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  await c.send(u.name);
  await c.waitPrompt(/^Password: $/);
  assert.ok(c.negotiations.some((n) => n.cmd === 'WILL' && n.opt === OPT_ECHO), 'echo off (IAC WILL ECHO)');
  const start = c.rawBytes().length;
  await c.write(Buffer.concat([Buffer.from(PASSWORD.slice(0, 5)), ipBytes]));
  await c.waitPrompt(/^Password: $/, undefined, 'the password prompt again');
  assert.equal(c.rawBytes().subarray(start).toString('latin1'), '\r\nPassword: ');
  // What was typed before Ctrl-C is not part of the password: the whole one logs in.
  await c.send(PASSWORD);
  await c.nextLine(new RegExp(`^\\* ${esc(u.name)} joined #general`));
});

test('Ctrl-C at /register\'s password prompt asks for the password again; a /register still waiting is dropped', async (t) => {
  const s = await server(t, ['--rate-limit', '4']);
  const c = await telnetLogin(s, t, uniq('Tel'));
  await c.send('/register');
  await c.waitPrompt(/^Password: $/);
  const start = c.rawBytes().length;
  await c.write(Buffer.from('secret-h\x03'));
  await c.waitPrompt(/^Password: $/, undefined, 'the password prompt again');
  assert.equal(c.rawBytes().subarray(start).toString('latin1'), '\r\nPassword: ');
  await c.send(PASSWORD);
  assert.equal(await c.nextLine(/is registered/), `* ${c.name} is registered. Next time: /login ${c.name} PASSWORD`);
  // Behind a waiting line, /register waits too, and Ctrl-C drops it with the rest.
  await c.write(lines(['one', 'two', 'three', 'four', 'five', '/register', 'behind']));
  await c.nextLine(msgLine('general', c.name, 'four'), TOKEN_WAIT);
  await c.write(ipBytes);
  assert.equal(await c.nextLine(/^\* \d+ waiting/), '* 3 waiting lines dropped');
  await c.send('/help');
  await c.nextLine(/^\* Over the rate limit/); // the help's last line: all of it is in
  assert.equal(c.partial, '', 'no password prompt: /register never ran');
});

test('/me TEXT: telnet sends "/me TEXT"; everyone on telnet sees "[#room] * name TEXT", in dms "[dm] * name TEXT"', async (t) => {
  const s = await server(t, ['--rate-limit', '0']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  await c.send('/me   waves hello');
  const m = await w.nextMessage('general', (x) => x.from === c.name);
  assert.equal(m.text, '/me waves hello', 'the text a WebSocket client gets');
  assert.equal(await c.nextLine(/waves/), `[#general] * ${c.name} waves hello`);

  // From a WebSocket user, in the room and in a dm; continuation lines as any message's.
  await w.say('general', '/me dances\nwildly');
  assert.equal(await c.nextLine(/dances/), `[#general] * ${w.name} dances`);
  assert.equal(await c.nextLine(/wildly/), '  wildly');
  await w.dm(c.name, '/me winks');
  assert.equal(await c.nextLine(/winks/), `[dm] * ${w.name} winks`);
  // Not actions: "/me" alone, "/meow", and "//me x" sends the text "/me x", which is one.
  await w.say('general', '/me');
  assert.equal(await c.nextLine(/\/me$/), msgLine('general', w.name, '/me'));
  await w.say('general', '/meow');
  assert.equal(await c.nextLine(/meow/), msgLine('general', w.name, '/meow'));
  await c.send('//me slashes');
  assert.equal(await c.nextLine(/slashes/), `[#general] * ${c.name} slashes`);
  // /history shows actions the same way.
  await c.send('/history 2');
  assert.equal(await c.nextLine(/winks|dances|slashes|meow/), msgLine('general', w.name, '/meow'));
  assert.equal(await c.nextLine(/slashes/), `[#general] * ${c.name} slashes`);
  await c.send('/me');
  assert.equal(await c.nextLine(/^! /), '! bad_request: usage: /me TEXT');
  c.assertCrlf();
});

test('/me waits for a token like any line sent', async (t) => {
  const s = await server(t, ['--rate-limit', '4']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  c.discardLines();
  const texts = ['one', 'two', 'three', 'four'];
  await c.write(lines([...texts, '/me five']));
  assert.deepEqual(await textsFrom(w, c.name, 5), [...texts, '/me five']);
  const { before } = await c.until(`[#general] * ${c.name} five`, TOKEN_WAIT);
  assert.deepEqual(before, texts.map((x) => msgLine('general', c.name, x)));
});

test('--telnet-idle: a user whose lines wait is not idle; the deadline counts from the last line run', async (t) => {
  // 2 tokens, one more every 5 s: "three" runs about 5 s after the burst, past a 2 s idle deadline.
  const s = await server(t, ['--rate-limit', '2', '--telnet-idle', '2']);
  const w = await watcher(s, t);
  const c = await telnetLogin(s, t, uniq('Tel'));
  await c.write(lines(['one', 'two', 'three']));
  assert.deepEqual(await textsFrom(w, c.name, 3), ['one', 'two', 'three']);
  await c.waitClosed(TOKEN_WAIT, 'the idle close after the last waiting line ran');
  const got = c.pendingLines();
  assert.equal(got.at(-1), '* Idle too long. Bye.', JSON.stringify(got));
  assert.ok(got.includes(msgLine('general', c.name, 'three')), JSON.stringify(got));
});
