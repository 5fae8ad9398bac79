// search (protocol 1.1 rules 71-73, 75, 86): words, prefixes and phrases of current texts, folded
// (NFC, simple case folding, accents kept); scope (public rooms, a registered user's own dm rooms);
// one server-wide order; limit, the --search-scan cap and the signed next/after cursor; errors in
// rule 75's order; the search bucket. Every server here is real parley on loopback with SQLite.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshDataDir, sqliteOnly, startChatServer } from './lib/server.mjs';
import { assertKeys, dmRoom, eventually, guest, uniq, uniqRoom, user, connect, PASSWORD } from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0', '--search-rate', '0']);
});

after(() => server?.dispose());

// A word no other test's text holds (letters and digits only: one word to the index).
const word = (prefix = 'w') => `${prefix}${randomBytes(5).toString('hex')}`;

// Sends text to room (or to a user with { to }) and resolves with the stored message event.
async function post(c, room, text, extra = {}) {
  const ack = await c.expect({ type: 'send', text, ...(room ? { room } : {}), ...extra }, 'ack');
  return c.nextMessage(ack.room, (m) => m.seq === ack.seq);
}

// Sends like post, then waits until the clock has passed the message's ts, so the next message
// gets a later one (for tests whose point needs distinct ts; the order is checked either way).
async function postApart(c, room, text, extra = {}) {
  const m = await post(c, room, text, extra);
  await eventually(() => Date.now() > m.ts + 1, undefined, 'the clock to pass the message ts');
  return m;
}

const search = (c, req) => c.expect({ type: 'search', ...req }, 'search');
const ids = (results) => results.map((m) => `${m.room}/${m.seq}`);

// Rule 72's order: ts descending, then room ascending, then seq descending.
function inOrder(a, b) {
  if (a.ts !== b.ts) return b.ts - a.ts;
  if (a.room !== b.room) return a.room < b.room ? -1 : 1;
  return b.seq - a.seq;
}

// Every result of a search, page by page (limit per page); asserts each page's shape.
async function allPages(c, req, limit) {
  const seen = [];
  let after;
  for (let page = 0; page < 1000; page++) {
    const r = await search(c, { ...req, limit, ...(after ? { after } : {}) });
    assert.ok(r.results.length <= limit, `page over the limit: ${r.results.length}`);
    seen.push(...r.results);
    if (r.next === undefined) return seen;
    assert.equal(typeof r.next, 'string');
    after = r.next;
  }
  throw new Error('no end of pages');
}

test('hello lists search, in rule 46 order', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/ws`);
  const hello = await new Promise((resolve, reject) => {
    ws.once('message', (d) => resolve(JSON.parse(d.toString())));
    ws.once('error', reject);
  });
  ws.terminate();
  const order = ['edit', 'delete', 'react', 'reply', 'topic', 'moderation', 'read', 'search', 'status', 'saved_rooms', 'large_rooms'];
  assert.ok(hello.features.includes('search'), `features ${hello.features}`);
  const positions = hello.features.map((f) => order.indexOf(f));
  assert.ok(!positions.includes(-1), `unknown feature in ${hello.features}`);
  assert.deepEqual(positions, [...positions].sort((x, y) => x - y));
});

test('the example: words, a phrase and a prefix, in one room; results are history entries with reactions and me', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  await b.join(room);
  const w = word();
  const m = await post(b, room, `deploy the ${w} on Friday`, { cid: 'c-1' });
  await post(b, room, `Friday on deploy ${w}`); // the phrase is not in this one
  const edit = await b.expect({ type: 'edit', room, seq: m.seq, text: `deploy the release on Friday? ${w}` }, 'ack');
  await a.expect({ type: 'react', room, seq: m.seq, emoji: '👍' }, 'ack');
  const r = await search(a, { id: 23, q: `deploy "on friday" rel* ${w}`, room, limit: 20 });
  assertKeys(r, ['type', 'id', 'results']);
  assert.equal(r.id, 23);
  assert.equal(r.results.length, 1, JSON.stringify(r));
  const e = r.results[0];
  assertKeys(e, ['type', 'room', 'seq', 'ts', 'from', 'cid', 'text', 'edited', 'reactions']);
  assert.equal(e.type, 'message');
  assert.equal(e.seq, m.seq);
  assert.equal(e.ts, m.ts);
  assert.equal(e.from, b.name);
  assert.equal(e.cid, 'c-1');
  assert.equal(e.text, `deploy the release on Friday? ${w}`);
  assert.ok(Number.isInteger(e.edited) && e.edited >= m.ts, `edited ${e.edited}`);
  assert.ok(edit.seq > m.seq);
  assert.deepEqual(e.reactions, [{ emoji: '👍', count: 1, me: true, users: [a.name] }]);
  // b does not hold the reaction: me false.
  const rb = await search(b, { q: `rel* ${w}`, room });
  assert.deepEqual(rb.results[0].reactions, [{ emoji: '👍', count: 1, me: false, users: [a.name] }]);
});

test('replies and mentions come as in history', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const first = await post(a, room, `first ${w}`);
  const reply = await post(a, room, `@${b.name} reply ${w}`, { reply_to: first.seq });
  const r = await search(a, { q: `reply ${w}` });
  assert.equal(r.results.length, 1);
  assertKeys(r.results[0], ['type', 'room', 'seq', 'ts', 'from', 'text', 'reply_to', 'mentions']);
  assert.equal(r.results[0].reply_to, first.seq);
  assert.deepEqual(r.results[0].mentions, [b.name]);
  assert.equal(r.results[0].seq, reply.seq);
});

test('rule 71: words, prefixes, phrases; every term must match; other * separates', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const one = await post(a, room, `${w} alpha beta-gamma release`);
  const two = await post(a, room, `${w} gamma beta released`);
  const find = async (q) => ids((await search(a, { q, room })).results).sort();
  const both = [`${room}/${one.seq}`, `${room}/${two.seq}`].sort();
  assert.deepEqual(await find(`${w}`), both);
  assert.deepEqual(await find(`${w} alpha`), [`${room}/${one.seq}`]);
  assert.deepEqual(await find(`${w} rel*`), both, 'a prefix');
  assert.deepEqual(await find(`${w} release`), [`${room}/${one.seq}`], 'a word is whole');
  assert.deepEqual(await find(`${w} rel *`), [], 'a star after a space is no prefix: rel is a word');
  assert.deepEqual(await find(`${w} "beta gamma"`), [`${room}/${one.seq}`], 'a phrase: in a row, in order');
  assert.deepEqual(await find(`${w} "gamma beta"`), [`${room}/${two.seq}`]);
  assert.deepEqual(await find(`"${w} alpha" "" gamma`), [`${room}/${one.seq}`], 'an empty pair is ignored');
  assert.deepEqual(await find(`${w} *alpha`), [`${room}/${one.seq}`], 'a star before a word separates');
  assert.deepEqual(await find(`${w} al*pha`), [], 'al* then the word pha');
  assert.deepEqual(await find(`${w} alpha nothere`), [], 'every term must match');
});

test('rule 71: FTS syntax in q is only words', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const m = await post(a, room, `${w} deploy`);
  const wordsToo = await post(a, room, `${w} words: deploy or not near(x) and`);
  for (const q of [`${w} OR nothing`, `${w} NOT deploy`, `${w} NEAR(deploy x)`, `words:${w}`, `${w} ^deploy AND`, `(${w}) + {rkey}`]) {
    const r = await search(a, { q, room });
    for (const e of r.results) assert.equal(e.seq, wordsToo.seq, `${q} found ${JSON.stringify(e)}`);
  }
  assert.deepEqual(ids((await search(a, { q: `${w} words:deploy NOT`, room })).results), [`${room}/${wordsToo.seq}`]);
  assert.deepEqual(ids((await search(a, { q: `-${w}- ^deploy+`, room })).results).sort(), [`${room}/${m.seq}`, `${room}/${wordsToo.seq}`].sort());
});

test('rule 71: NFC and simple case folding on both sides; accents kept; separators', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const cafe = await post(a, room, `${w} Cafe\u0301 STRAßE Σίσυφος e-mail foo_bar x.y`); // decomposed é
  const plain = await post(a, room, `${w} cafe strasse`);
  const find = async (q) => ids((await search(a, { q, room })).results).sort();
  assert.deepEqual(await find(`${w} café`), [`${room}/${cafe.seq}`], 'composed query, decomposed text');
  assert.deepEqual(await find(`${w} CAFE\u0301`), [`${room}/${cafe.seq}`], 'decomposed, upper case');
  assert.deepEqual(await find(`${w} cafe`), [`${room}/${plain.seq}`], 'accents kept: e is not é');
  assert.deepEqual(await find(`${w} straße`), [`${room}/${cafe.seq}`]);
  assert.deepEqual(await find(`${w} strasse`), [`${room}/${plain.seq}`], 'simple folding: ß is not ss');
  assert.deepEqual(await find(`${w} ΣΊΣΥΦΟΣ`), [`${room}/${cafe.seq}`], 'final sigma folds as sigma');
  assert.deepEqual(await find(`${w} "e mail"`), [`${room}/${cafe.seq}`]);
  assert.deepEqual(await find(`${w} e-mail`), [`${room}/${cafe.seq}`]);
  assert.deepEqual(await find(`${w} foo bar x y`), [`${room}/${cafe.seq}`], '_ and . separate');
  assert.deepEqual(await find(`${w} foo_bar`), [`${room}/${cafe.seq}`]);
});

test('edited and deleted messages: current text only; deleted ones never match', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const old = word('old');
  const neu = word('new');
  const m = await post(a, room, `${w} ${old}`);
  await a.expect({ type: 'edit', room, seq: m.seq, text: `${w} ${neu}` }, 'ack');
  assert.deepEqual((await search(a, { q: old })).results, [], 'the replaced text is not served');
  const r = await search(a, { q: neu });
  assert.deepEqual(ids(r.results), [`${room}/${m.seq}`]);
  assert.equal(r.results[0].text, `${w} ${neu}`);
  await a.expect({ type: 'delete', room, seq: m.seq }, 'ack');
  assert.deepEqual((await search(a, { q: neu })).results, []);
  assert.deepEqual((await search(a, { q: w })).results, []);
});

test('scope: public rooms without joining, own dm rooms of a registered user, not others\' dm rooms, none for guests', async (t) => {
  const a = await user(server, t);
  const b = await user(server, t);
  const c = await user(server, t);
  const g = await guest(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const pub = await post(a, room, `${w} public`);
  const dm = await post(a, null, `${w} private`, { to: b.name });
  const gdm = await post(g, null, `${w} from a guest`, { to: a.name });
  const dmab = dmRoom(a.name, b.name);
  // a: the public message, its own dm rooms.
  assert.deepEqual(ids((await search(a, { q: w })).results).sort(), [`${room}/${pub.seq}`, `${dmab}/${dm.seq}`, `${dmRoom(a.name, g.name)}/${gdm.seq}`].sort());
  // b never joined the room: public rooms are searched all the same.
  assert.deepEqual(ids((await search(b, { q: w })).results).sort(), [`${room}/${pub.seq}`, `${dmab}/${dm.seq}`].sort());
  assert.deepEqual(ids((await search(c, { q: w })).results), [`${room}/${pub.seq}`], 'another pair\'s dm rooms are not searched');
  assert.deepEqual(ids((await search(g, { q: w })).results), [`${room}/${pub.seq}`], 'a guest searches no dm room');
  // With room: that room alone.
  assert.deepEqual(ids((await search(b, { q: w, room: dmab })).results), [`${dmab}/${dm.seq}`]);
  assert.deepEqual(ids((await search(b, { q: w, room })).results), [`${room}/${pub.seq}`]);
  await c.expectError({ type: 'search', q: w, room: dmab }, 'forbidden');
  await g.expectError({ type: 'search', q: w, room: dmRoom(a.name, g.name) }, 'forbidden');
  // An unknown public room: nothing (rules 60, 86).
  const none = await search(a, { q: w, room: uniqRoom('nosuch') });
  assertKeys(none, ['type', 'id', 'results']);
  assert.deepEqual(none.results, []);
});

test('rule 40: a dm of a former guest of the same name stays out of the new account\'s search', async (t) => {
  const a = await user(server, t);
  const name = uniq('g');
  const g = await guest(server, t, name);
  const w = word();
  const old = await post(a, null, `${w} to the guest`, { to: name });
  await g.close();
  const reg = await connect(server, t);
  await eventually(async () => (await reg.request({ type: 'register', name, password: PASSWORD })).type === 'registered', undefined, 'the guest name to be free');
  await reg.login(name, PASSWORD);
  const later = await post(a, null, `${w} to the account`, { to: name });
  const room = dmRoom(a.name, name);
  assert.deepEqual(ids((await search(reg, { q: w })).results), [`${room}/${later.seq}`]);
  assert.deepEqual(ids((await search(reg, { q: w, room })).results), [`${room}/${later.seq}`]);
  assert.deepEqual(ids((await search(a, { q: w, room })).results), [`${room}/${later.seq}`, `${room}/${old.seq}`]);
});

test('rule 72: one server-wide order across rooms (ts desc, room asc, seq desc), with or without room', async (t) => {
  const a = await user(server, t);
  const rooms = [uniqRoom('c'), uniqRoom('a'), uniqRoom('b')];
  for (const r of rooms) await a.join(r);
  const w = word();
  // Sent at once, several per room: ts ties across rooms are likely, and must be ordered too.
  const sent = await Promise.all(
    Array.from({ length: 24 }, (_, i) => post(a, rooms[i % 3], `${w} number ${i}`)),
  );
  const expected = [...sent].sort(inOrder);
  const r = await search(a, { q: w, limit: 100 });
  assert.deepEqual(ids(r.results), ids(expected));
  assert.equal(r.next, undefined, 'nothing more: no next');
  const inRoom = await search(a, { q: w, room: rooms[1], limit: 100 });
  assert.deepEqual(ids(inRoom.results), ids(expected.filter((m) => m.room === rooms[1])));
});

test('rule 72: limit (default 20, 1..100), next at the limit, after continues with no duplicate or gap', async (t) => {
  const a = await user(server, t);
  const rooms = [uniqRoom(), uniqRoom()];
  for (const r of rooms) await a.join(r);
  const w = word();
  const sent = [];
  for (let i = 0; i < 45; i += 5) {
    sent.push(...(await Promise.all(Array.from({ length: 5 }, (_, k) => post(a, rooms[(i + k) % 2], `${w} ${i + k}`)))));
  }
  const expected = ids([...sent].sort(inOrder));
  const first = await search(a, { q: w });
  assert.equal(first.results.length, 20, 'default limit 20');
  assert.equal(typeof first.next, 'string');
  assert.deepEqual(ids(first.results), expected.slice(0, 20));
  const second = await search(a, { q: w, after: first.next, limit: 20 });
  assert.deepEqual(ids(second.results), expected.slice(20, 40));
  for (const limit of [1, 3, 7, 100]) {
    assert.deepEqual(ids(await allPages(a, { q: w }, limit)), expected, `paging by ${limit}`);
  }
  assert.equal((await search(a, { q: w, limit: 100 })).next, undefined);
  // The same after again gives the same page: a cursor is no state on the server.
  assert.deepEqual(ids((await search(a, { q: w, after: first.next, limit: 20 })).results), expected.slice(20, 40));
});

test('a new message while paging comes before the cursor: later pages neither repeat nor miss anything', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const sent = [];
  for (let i = 0; i < 6; i++) sent.push(await post(a, room, `${w} ${i}`));
  const first = await search(a, { q: w, limit: 2 });
  await post(a, room, `${w} newer`);
  const rest = await allPages(a, { q: w, after: first.next }, 2);
  assert.deepEqual(ids([...first.results, ...rest]), ids([...sent].sort(inOrder)));
});

test('after the newest match is deleted, a new message does not take its place in a cursor\'s range', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const sent = [];
  for (let i = 0; i < 3; i++) sent.push(await post(a, room, `${w} ${i}`));
  const first = await search(a, { q: w, limit: 1 });
  assert.deepEqual(ids(first.results), [`${room}/${sent[2].seq}`]);
  await a.expect({ type: 'delete', room, seq: sent[2].seq }, 'ack');
  await post(a, room, `${w} newer`);
  const rest = await allPages(a, { q: w, after: first.next }, 1);
  assert.deepEqual(ids(rest), [`${room}/${sent[1].seq}`, `${room}/${sent[0].seq}`]);
});

test('rule 72: bad after → bad_request (garbage, altered, another q, another room, a dropped room)', async (t) => {
  const a = await user(server, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  for (let i = 0; i < 3; i++) await post(a, room, `${w} ${i}`);
  const p = await search(a, { q: w, limit: 1 });
  const pr = await search(a, { q: w, room, limit: 1 });
  assert.equal(typeof p.next, 'string');
  const flip = (s) => (s[5] === 'A' ? `${s.slice(0, 5)}B${s.slice(6)}` : `${s.slice(0, 5)}A${s.slice(6)}`);
  for (const [req, what] of [
    [{ q: w, after: 'not a cursor' }, 'garbage'],
    [{ q: w, after: '' }, 'empty'],
    [{ q: w, after: flip(p.next) }, 'altered'],
    [{ q: `${w} x`, after: p.next }, 'another q'],
    [{ q: w.toUpperCase(), after: p.next }, 'another spelling of q'],
    [{ q: w, room, after: p.next }, 'a room added'],
    [{ q: w, after: pr.next }, 'the room dropped'],
    [{ q: w, room: uniqRoom(), after: pr.next }, 'another room'],
    [{ q: w, after: 5 }, 'not a string'],
    [{ q: w, after: null }, 'null'],
  ]) {
    const r = await a.request({ type: 'search', ...req });
    assert.equal(r.code, 'bad_request', `${what}: ${JSON.stringify(r)}`);
  }
  // Trailing white space is trimmed from q before the cursor compares it.
  assert.equal((await search(a, { q: `${w}  `, after: p.next, limit: 1 })).results.length, 1);
});

test('rule 71/75: q errors, limit errors, and their order with bad_name and too_long', async (t) => {
  const a = await user(server, t);
  const long = 'é'.repeat(201);
  const cases = [
    [{}, 'bad_request', 'q missing'],
    [{ q: null }, 'bad_request', 'q null'],
    [{ q: 5 }, 'bad_request', 'q not a string'],
    [{ q: '' }, 'bad_request', 'empty'],
    [{ q: ' \t ' }, 'bad_request', 'white space only'],
    [{ q: 'a\u0001b' }, 'bad_request', 'control character'],
    [{ q: 'a\nb' }, 'bad_request', 'newline'],
    [{ q: '"odd' }, 'bad_request', 'odd quotes'],
    [{ q: '"" * - !' }, 'bad_request', 'no word'],
    [{ q: long }, 'too_long', '201 code points'],
    [{ q: `${long}"` }, 'bad_request', 'too long and odd quotes: bad_request first'],
    [{ q: long, room: 'Bad Room!' }, 'bad_name', 'bad_name before too_long'],
    [{ q: '"', room: 'Bad Room!' }, 'bad_request', 'bad_request before bad_name'],
    [{ q: 'x', room: 5 }, 'bad_request', 'room not a string'],
    [{ q: 'x', room: 'dm:zed:alf' }, 'bad_name', 'a dm room not in canonical form'],
    [{ q: 'x', limit: 0 }, 'bad_request', 'limit 0'],
    [{ q: 'x', limit: 101 }, 'bad_request', 'limit 101'],
    [{ q: 'x', limit: 2.5 }, 'bad_request', 'limit not an integer'],
    [{ q: 'x', limit: '5' }, 'bad_request', 'limit a string'],
    [{ q: long, limit: 0 }, 'bad_request', 'limit before too_long'],
  ];
  for (const [req, code, what] of cases) {
    const r = await a.request({ type: 'search', ...req });
    assert.equal(r.type, 'error', `${what}: ${JSON.stringify(r)}`);
    assert.equal(r.code, code, `${what}: ${JSON.stringify(r)}`);
  }
  // 200 code points, trailing white space aside, are fine; so are limits 1 and 100.
  assert.deepEqual((await search(a, { q: `${'é'.repeat(200)}   `, limit: 100 })).results, []);
  assert.deepEqual((await search(a, { q: word(), limit: 1 })).results, []);
  // Not logged in ranks before field validation.
  const anon = await connect(server, t);
  const r = await anon.request({ type: 'search', q: '' });
  assert.equal(r.code, 'not_logged_in');
});

test('--search-scan N: a search examines at most N index rows, answers fewer than limit (even none) with next, and paging still finds everything', async (t) => {
  const capped = await startChatServer(['--rate-limit', '0', '--search-rate', '0', '--search-scan', '2']);
  t.after(() => capped.dispose());
  const a = await user(capped, t);
  const b = await user(capped, t);
  const c = await user(capped, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const mine = [];
  for (let i = 0; i < 3; i++) mine.push(await postApart(a, room, `${w} public ${i}`));
  // Newer: four dm messages c cannot see, but which its search examines.
  for (let i = 0; i < 4; i++) await postApart(a, null, `${w} private ${i}`, { to: b.name });
  const firstPage = await search(c, { q: w, limit: 20 });
  assert.ok(firstPage.results.length < 20);
  assert.equal(typeof firstPage.next, 'string', 'stopped at the cap: next');
  assert.deepEqual(firstPage.results, [], 'the rows examined were all out of reach: no result, and next');
  const all = await allPages(c, { q: w }, 20);
  assert.deepEqual(ids(all), ids([...mine].sort(inOrder)));
  const scanned = await search(a, { q: `${w} public`, limit: 20 });
  assert.ok(scanned.results.length <= 2, `at most 2 rows examined: ${scanned.results.length} results`);
  assert.equal(typeof scanned.next, 'string');
});

test('rule 73: the search bucket (--search-rate N): rate_limited when empty; errors take no token and rank before it', async (t) => {
  const limited = await startChatServer(['--rate-limit', '100', '--search-rate', '2']);
  t.after(() => limited.dispose());
  const a = await user(limited, t);
  const b = await user(limited, t);
  const w = word();
  await search(a, { q: w });
  await a.expectError({ type: 'search', q: '' }, 'bad_request'); // no token taken
  await a.expectError({ type: 'search', q: w, room: dmRoom(b.name, 'zz') }, 'forbidden');
  await search(a, { q: w });
  await a.expectError({ type: 'search', q: w }, 'rate_limited');
  await a.expectError({ type: 'search', q: '"' }, 'bad_request'); // field validation first
  await a.expectError({ type: 'search', q: w, room: dmRoom(b.name, 'zz') }, 'forbidden'); // membership first
  // Sends use another bucket.
  const room = uniqRoom();
  await a.join(room);
  await a.expect({ type: 'send', room, text: 'still sending' }, 'ack');
  // Each connection has its own bucket.
  await search(b, { q: w });
});

test('rule 73: more than 10 × --search-rate search requests in 10 s close the connection (1008)', async (t) => {
  const limited = await startChatServer(['--rate-limit', '100', '--search-rate', '1']);
  t.after(() => limited.dispose());
  const a = await user(limited, t);
  for (let i = 0; i < 10; i++) {
    const r = await a.request({ type: 'search', q: i % 2 ? 'x' : '' });
    assert.ok(r.type === 'search' || r.type === 'error', JSON.stringify(r));
  }
  await a.send({ type: 'search', q: 'x' });
  const close = await a.waitClosed();
  assert.equal(close.code, 1008, JSON.stringify(close));
});

test('--retention trims the index with the messages', async (t) => {
  const kept = await startChatServer(['--rate-limit', '0', '--search-rate', '0', '--retention', '2']);
  t.after(() => kept.dispose());
  const a = await user(kept, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const sent = [];
  for (let i = 0; i < 5; i++) sent.push(await post(a, room, `${w} ${i}`));
  assert.deepEqual(ids((await search(a, { q: w })).results), ids(sent.slice(3).sort(inOrder)));
});

test('the migration indexes the messages already stored (a 1.0 database)', { skip: sqliteOnly }, async (t) => {
  const dataDir = freshDataDir();
  const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'store-v1.db');
  copyFileSync(fixture, path.join(dataDir, 'parley.db'));
  const old = await startChatServer(['--rate-limit', '0', '--search-rate', '0'], { dataDir });
  t.after(() => old.dispose());
  const alice = await connect(old, t);
  await alice.login('alice', PASSWORD);
  const hi = await search(alice, { q: 'HI' });
  assert.deepEqual(hi.results.map((m) => [m.room, m.seq, m.text]).sort(), [['dev', 2, 'hi alice'], ['dev', 3, 'guest says hi']]);
  assert.deepEqual(ids(hi.results), ids([...hi.results].sort(inOrder)));
  assert.deepEqual(ids((await search(alice, { q: 'secret' })).results), ['dm:alice:bob/1']);
  assert.deepEqual(ids((await search(alice, { q: 'fourth', room: 'dev' })).results), ['dev/4']);
});

test('the index survives a restart', async (t) => {
  const s1 = await startChatServer(['--rate-limit', '0', '--search-rate', '0']);
  t.after(() => s1.dispose());
  const a = await user(s1, t);
  const room = uniqRoom();
  await a.join(room);
  const w = word();
  const m = await post(a, room, `${w} before the restart`);
  await s1.stop();
  const s2 = await s1.restart();
  t.after(() => s2.kill());
  const a2 = await connect(s2, t);
  await a2.login(a.name, PASSWORD);
  assert.deepEqual(ids((await search(a2, { q: w })).results), [`${room}/${m.seq}`]);
});

// Every byte of the data directory's files, as one latin1 string.
function dataBytes(dir) {
  return readdirSync(dir)
    .map((f) => readFileSync(path.join(dir, f)).toString('latin1'))
    .join('\n');
}

// How many of the FTS5 index's data blocks hold `s` (read with the sqlite3 CLI, server stopped).
function indexBlocksWith(dir, s) {
  const sql = `SELECT count(*) FROM search_index_data WHERE instr(block, CAST('${s}' AS BLOB)) > 0;`;
  return Number(execFileSync('sqlite3', [path.join(dir, 'parley.db'), sql]).toString().trim());
}

test('erasure: a deleted message\'s and a replaced text\'s words leave the index and the files (merged, no old segment keeps them)', { skip: sqliteOnly }, async (t) => {
  const s = await startChatServer(['--rate-limit', '0', '--search-rate', '0']);
  t.after(() => s.dispose());
  const a = await user(s, t);
  const room = uniqRoom();
  await a.join(room);
  const hex = () => randomBytes(6).toString('hex');
  const [gone, replaced, kept, current] = [hex(), hex(), hex(), hex()];
  const w = word();
  // Several transactions, so the index has several segments before the erasures.
  const del = await post(a, room, `${w} gone${gone}`);
  const ed = await post(a, room, `${w} replaced${replaced}`);
  for (let i = 0; i < 6; i++) await post(a, room, `${w} filler ${i} kept${kept}`);
  await a.expect({ type: 'delete', room, seq: del.seq }, 'ack');
  await a.expect({ type: 'edit', room, seq: ed.seq, text: `${w} current${current}` }, 'ack');
  assert.deepEqual((await search(a, { q: `gone${gone}` })).results, []);
  assert.deepEqual((await search(a, { q: `replaced${replaced}` })).results, []);
  assert.equal((await search(a, { q: `current${current}` })).results.length, 1);
  await s.stop();
  // The method sees index bytes: the kept and current words are in the index's blocks.
  assert.ok(indexBlocksWith(s.dataDir, kept) > 0, 'the kept word is in the index blocks');
  assert.ok(indexBlocksWith(s.dataDir, current) > 0, 'the current word is in the index blocks');
  assert.equal(indexBlocksWith(s.dataDir, gone), 0, 'the deleted word is still in an index block');
  assert.equal(indexBlocksWith(s.dataDir, replaced), 0, 'the replaced word is still in an index block');
  // The index is whole (FTS5's own check; a contentless delete with other words would break it).
  execFileSync('sqlite3', [path.join(s.dataDir, 'parley.db'), "INSERT INTO search_index(search_index) VALUES('integrity-check');"]);
  const bytes = dataBytes(s.dataDir);
  assert.ok(bytes.includes(kept));
  assert.ok(!bytes.includes(gone), 'the deleted word is still in the data files');
  assert.ok(!bytes.includes(replaced), 'the replaced word is still in the data files');
});
