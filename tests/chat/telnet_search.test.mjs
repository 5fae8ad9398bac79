// Telnet /search WORDS (protocol 1.1 rules 76, 77, 79, 86), byte-exact: the results as message
// lines, newest first, in current state (edited ones as their "(edited)" line, deleted ones not
// at all, dm messages as "[dm] a -> b: text", continuation lines indented), then "* N results";
// errors as "! code: ..." lines; over the search bucket the line waits instead of failing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startChatServer } from './lib/server.mjs';
import { PASSWORD, connect, ms, uniq, uniqRoom, user } from './lib/chat.mjs';
import { telnetLogin } from './lib/telnet.mjs';

// Lines that wait for a token come seconds later: a bound on the wait, not a timing assertion.
const TOKEN_WAIT = ms(20000);
const word = () => `w${randomBytes(5).toString('hex')}`;

async function server(t, args) {
  const s = await startChatServer(args);
  t.after(() => s.dispose());
  return s;
}

// A registered telnet user (lower-case name, as dm lines from the store spell the peer).
async function telnetUser(s, t) {
  const name = uniq('t').toLowerCase();
  const reg = await connect(s, t);
  await reg.register(name, PASSWORD);
  await reg.close();
  return telnetLogin(s, t, name, { line: `/login ${name} ${PASSWORD}` });
}

// The bytes the server sends after `mark` bytes, up to and including the line `last`.
async function bytesThrough(tn, mark, last) {
  await tn.until(last, TOKEN_WAIT);
  const all = tn.rawBytes().subarray(mark);
  const end = all.indexOf(Buffer.from(`${last}\r\n`));
  assert.ok(end >= 0, `no ${last} in ${JSON.stringify(all.toString())}`);
  return all.subarray(0, end + last.length + 2);
}

test('/search WORDS: message lines newest first, current states, dm lines, continuation lines, then the count', async (t) => {
  const s = await server(t, ['--rate-limit', '0']);
  const tn = await telnetUser(s, t);
  const ws = await user(s, t);
  const room = uniqRoom('r'); // sorts after "dm:": ties in ts keep this order too
  await ws.join(room);
  const w = word();
  await ws.say(room, `alpha ${w}`);
  await ws.say(room, `beta ${w}`);
  await ws.expect({ type: 'edit', room, seq: 2, text: `beta ${w} fixed` }, 'ack');
  await ws.say(room, `gamma\n${w} second line`);
  const del = await ws.say(room, `deleted ${w}`);
  await ws.expect({ type: 'delete', room, seq: del.seq }, 'ack');
  await ws.say(room, 'no match here');
  await ws.dm(tn.name, `psst ${w}`);
  await tn.nextLine(`[dm] ${ws.name} -> ${tn.name}: psst ${w}`);
  tn.discardLines();
  const mark = tn.rawBytes().length;
  tn.send(`/search ${w}`);
  const got = await bytesThrough(tn, mark, '* 4 results');
  const want = [
    `[dm] ${ws.name} -> ${tn.name}: psst ${w}`,
    `[#${room}] ${ws.name}: gamma`,
    `  ${w} second line`,
    `[#${room}] ${ws.name} (edited): beta ${w} fixed`,
    `[#${room}] ${ws.name}: alpha ${w}`,
    '* 4 results',
  ];
  assert.equal(got.toString('utf8'), want.map((l) => `${l}\r\n`).join(''));
  // One result: the singular; none: 0 results. Phrases and prefixes as on the WebSocket.
  const m2 = tn.rawBytes().length;
  tn.send(`/search "alpha ${w}"`);
  assert.equal((await bytesThrough(tn, m2, '* 1 result')).toString(), `[#${room}] ${ws.name}: alpha ${w}\r\n* 1 result\r\n`);
  const m3 = tn.rawBytes().length;
  tn.send(`/search gam* ${w}`);
  assert.equal((await bytesThrough(tn, m3, '* 1 result')).toString(), `[#${room}] ${ws.name}: gamma\r\n  ${w} second line\r\n* 1 result\r\n`);
  const m4 = tn.rawBytes().length;
  tn.send(`/search ${word()}`);
  assert.equal((await bytesThrough(tn, m4, '* 0 results')).toString(), '* 0 results\r\n');
  tn.assertCrlf();
});

test('/search errors: no words, odd quotes, too long, as "! code: ..." lines', async (t) => {
  const s = await server(t, ['--rate-limit', '0']);
  const tn = await telnetLogin(s, t, uniq('t'));
  tn.discardLines();
  for (const [line, want] of [
    ['/search', '! bad_request: usage: /search WORDS'],
    ['/search "odd', '! bad_request: the query has an odd number of quotes'],
    ['/search * - !', '! bad_request: the query has no word to search for'],
    [`/search ${'x'.repeat(201)}`, '! too_long: the query is over 200 characters'],
  ]) {
    const mark = tn.rawBytes().length;
    tn.send(line);
    assert.equal((await bytesThrough(tn, mark, want)).toString(), `${want}\r\n`, line);
  }
});

test('rule 79: over the search bucket /search waits for a token instead of failing, and later lines wait behind it', async (t) => {
  // 2 tokens, refilled at 2 per 10 s: the third search waits about 5 s.
  const s = await server(t, ['--rate-limit', '0', '--search-rate', '2']);
  const ws = await user(s, t);
  await ws.join('general');
  const tn = await telnetLogin(s, t, uniq('t'));
  tn.discardLines();
  const w = word();
  await ws.say('general', `found ${w}`);
  await tn.nextLine(`[#general] ${ws.name}: found ${w}`);
  tn.send(`/search ${w}`);
  tn.send(`/search ${w}`);
  tn.send(`/search ${w}`);
  tn.send('after the searches');
  const result = `[#general] ${ws.name}: found ${w}`;
  const { before, match } = await tn.until(`[#general] ${tn.name}: after the searches`, TOKEN_WAIT);
  assert.ok(match);
  assert.deepEqual(before, [result, '* 1 result', result, '* 1 result', result, '* 1 result']);
  // The WebSocket user saw the plain line only after the three searches ran.
  const m = await ws.nextMessage('general', (x) => x.from === tn.name, TOKEN_WAIT);
  assert.equal(m.text, 'after the searches');
});
