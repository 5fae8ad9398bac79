// Telnet and status (protocol 1.1 rules 76, 77, 79): /away [TEXT] and /back set the user's
// status and show nothing (rule 76: no status change is shown on telnet, the user's own neither);
// /who marks away users " (away)"; /away and /back wait for a send-bucket token like a plain
// line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { ms, openRoom, tab, uniq, uniqRoom, user } from './lib/chat.mjs';
import { telnetLogin } from './lib/telnet.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

const isPresence = (room, who) => (m) => m.type === 'presence' && m.room === room && m.user === who;

test('/away TEXT, /away, /back: the status others see, and nothing on telnet (rule 76)', async (t) => {
  const name = uniq('t');
  const tn = await telnetLogin(server, t, name);
  const ws = await user(server, t);
  await ws.join('general');
  await tn.nextLine(`* ${ws.name} joined #general`);
  const rawBefore = tn.rawBytes().length;

  tn.send('/away  out for lunch  ');
  assert.deepEqual(await ws.next(isPresence('general', name)), {
    type: 'presence', room: 'general', user: name, state: 'away', status_text: 'out for lunch',
  });
  tn.send('/away');
  assert.deepEqual(await ws.next(isPresence('general', name)), { type: 'presence', room: 'general', user: name, state: 'away' });
  tn.send('/back');
  assert.deepEqual(await ws.next(isPresence('general', name)), { type: 'presence', room: 'general', user: name, state: 'online' });
  // A line sent after them is the first thing telnet shows since.
  tn.send('marker');
  await tn.nextLine(`[#general] ${name}: marker`);
  assert.equal(
    tn.rawBytes().subarray(rawBefore).toString('utf8'),
    `[#general] ${name}: marker\r\n`,
    'no line for the status changes',
  );

  tn.send('/back now');
  assert.match(await tn.nextLine(/^!/), /^! bad_request: /);
  tn.send(`/away ${'x'.repeat(101)}`);
  assert.match(await tn.nextLine(/^!/), /^! too_long: /);
  tn.send('/away a\ttab');
  assert.match(await tn.nextLine(/^!/), /^! bad_request: /);
  tn.assertCrlf();
});

test('telnet shows no status change of anyone, its own user\'s other connections included (rule 76)', async (t) => {
  const room = uniqRoom('q');
  const a = await user(server, t);
  const tnA = await telnetLogin(server, t, a.name, { line: `/login ${a.name} ${a.password}` });
  const other = await telnetLogin(server, t, uniq('o'));
  for (const tn of [tnA, other]) {
    tn.send(`/join ${room}`);
    await tn.nextLine(new RegExp(`^\\* You joined #${room}`));
  }
  await a.join(room);
  for (const tn of [tnA, other]) tn.discardLines();
  await a.expect({ type: 'status', state: 'away', text: 'nobody sees this on telnet' }, 'status');
  await a.expect({ type: 'status', state: 'online' }, 'status');
  const marker = `marker ${uniq('m')}`;
  await a.say(room, marker);
  for (const tn of [tnA, other]) {
    const { before: seen } = await tn.until(`[#${room}] ${a.name}: ${marker}`);
    assert.deepEqual(seen.filter((l) => !l.startsWith('* ') || /away|online|status|back/i.test(l)), [],
      `${tn.label}: no line for a status change`);
  }
});

test('/who marks away users with " (away)"', async (t) => {
  const room = await openRoom(server, t, uniqRoom('w')); // a guest's join makes no room (rule 60)
  const tn = await telnetLogin(server, t, uniq('t'));
  tn.send(`/join ${room}`);
  await tn.nextLine(new RegExp(`^\\* You joined #${room}`));
  const away = await user(server, t, uniq('b'));
  const here = await user(server, t, uniq('c'));
  await away.expect({ type: 'status', state: 'away', text: 'zzz' }, 'status');
  await here.expect({ type: 'status', state: 'online', text: 'working' }, 'status');
  await away.join(room);
  await here.join(room);
  tn.send('/who');
  const names = [tn.name, away.name, here.name].sort((x, y) => (x.toLowerCase() < y.toLowerCase() ? -1 : 1));
  const shown = names.map((n) => (n === away.name ? `${n} (away)` : n));
  assert.equal(await tn.nextLine(/^\* In #/), `* In #${room}: ${shown.join(', ')}`);
  // Its own away mark too.
  tn.send('/away'); // handled before the /who behind it (lines run in order)
  tn.send('/who');
  const shown2 = names.map((n) => (n === away.name || n === tn.name ? `${n} (away)` : n));
  assert.equal(await tn.nextLine(/^\* In #/), `* In #${room}: ${shown2.join(', ')}`);
});

test('/away keeps the status for the user\'s other connections: a WebSocket tab is told, and welcome has it', async (t) => {
  const a = await user(server, t);
  const tn = await telnetLogin(server, t, a.name, { line: `/login ${a.name} ${a.password}` });
  tn.send('/away on the phone');
  assert.deepEqual(await a.next((m) => m.type === 'status'), { type: 'status', state: 'away', text: 'on the phone' });
  const b = await tab(server, t, a);
  assert.equal(b.welcome.state, 'away');
  assert.equal(b.welcome.status_text, 'on the phone');
});

test('/away and /back wait for a send-bucket token, in order with other lines (rule 79)', async (t) => {
  const s = await startChatServer(['--rate-limit', '2']);
  t.after(() => s.dispose());
  const w = await user(s, t);
  await w.join('general');
  const tn = await telnetLogin(s, t, uniq('t'));
  tn.discardLines();
  // Two tokens: the two lines take them; /away waits, then the last line behind it.
  await tn.write(Buffer.from('one\r\ntwo\r\n/away later\r\nthree\r\n'));
  // What the WebSocket user sees, in order: the two lines, the status, the line behind it.
  const got = [];
  for (let i = 0; i < 4; i++) {
    const m = await w.next((x) => (x.type === 'message' && x.room === 'general' && x.from === tn.name) ||
      (isPresence('general', tn.name)(x) && x.state === 'away'), ms(20000));
    got.push(m.type === 'message' ? m.text : `${m.state}: ${m.status_text}`);
  }
  assert.deepEqual(got, ['one', 'two', 'away: later', 'three']);
  assert.ok(!tn.pendingLines().some((l) => l.startsWith('* You') || l.startsWith('!')), `no notice: ${JSON.stringify(tn.pendingLines())}`);
});
