// Identity: hello, register, login (password, guest, token), names, tokens, guests registering.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { runParley } from '../blackbox/lib/server.mjs';
import {
  PASSWORD,
  assertKeys,
  connect,
  dmRoom,
  eventually,
  guest,
  tab,
  uniq,
  uniqRoom,
  user,
} from './lib/chat.mjs';

let server;

before(async () => {
  server = await startChatServer();
});

after(() => server?.dispose());

test('hello is the first message: {type:"hello", server:"parley", version, protocol:1, node, features}', async (t) => {
  const c = await connect(server, t);
  assertKeys(c.hello, ['type', 'server', 'version', 'protocol', 'node', 'features'], 'hello');
  // Rule 46: only the additions of protocol 1.1 implemented completely, in the protocol's order.
  assert.deepEqual(c.hello.features, ['edit', 'delete', 'react', 'reply', 'topic', 'moderation', 'read', 'search', 'status', 'saved_rooms', 'large_rooms']);
  assert.equal(c.hello.server, 'parley');
  assert.match(c.hello.version, /^\d+\.\d+\.\d+/);
  assert.equal(c.hello.protocol, 1);
  assert.equal(typeof c.hello.node, 'string');
  assert.ok(c.hello.node.length > 0);
});

test('hello.version is the server\'s own version (parley --version)', async (t) => {
  const c = await connect(server, t);
  const result = await runParley(['--version']);
  assert.equal(result.code, 0);
  assert.equal(result.stdout.trim(), `parley ${c.hello.version}`);
});

test('register → {type:"registered", id, name} exactly', async (t) => {
  const c = await connect(server, t);
  const name = uniq('reg');
  const reply = await c.request({ type: 'register', id: 1, name, password: PASSWORD });
  assert.deepEqual(reply, { type: 'registered', id: 1, name });
});

test('register does not log the connection in (rule 6)', async (t) => {
  const c = await connect(server, t);
  await c.register(uniq('reg'));
  await c.expectError({ type: 'join', room: 'general' }, 'not_logged_in');
  await c.expectError({ type: 'rooms' }, 'not_logged_in');
});

test('login with password → welcome {type, id, name, guest:false, token, dms:[]} exactly', async (t) => {
  const c = await connect(server, t);
  const name = uniq('al');
  await c.register(name);
  const w = await c.request({ type: 'login', id: 'w1', name, password: PASSWORD });
  assertKeys(w, ['type', 'id', 'name', 'guest', 'token', 'dms', 'rooms', 'state', 'status_text'], 'welcome');
  assert.equal(w.type, 'welcome');
  assert.equal(w.id, 'w1');
  assert.equal(w.name, name);
  assert.equal(w.guest, false);
  assert.equal(typeof w.token, 'string');
  assert.ok(w.token.length > 0, 'empty token');
  assert.deepEqual(w.dms, []);
});

test('names are case-insensitive and reported as first registered', async (t) => {
  const c = await connect(server, t);
  const name = `Mixed${uniq('Case')}`.slice(0, 32);
  await c.register(name);
  const w = await c.login(name.toLowerCase(), PASSWORD);
  assert.equal(w.name, name, 'welcome.name is not the registered spelling');
  const w2 = await (await connect(server, t)).login(name.toUpperCase(), PASSWORD);
  assert.equal(w2.name, name);
  // The registered spelling shows in members and in message events.
  const room = uniqRoom();
  const joined = await c.join(room);
  assert.deepEqual(joined.members, [name]);
  await c.say(room, 'spelling');
  const m = await c.nextMessage(room);
  assert.equal(m.from, name);
});

test('register of an existing name, in any case → name_taken', async (t) => {
  const c = await connect(server, t);
  const name = uniq('Taken');
  await c.register(name);
  await c.expectError({ type: 'register', name, password: PASSWORD }, 'name_taken');
  await c.expectError({ type: 'register', name: name.toUpperCase(), password: 'other-password' }, 'name_taken');
  await c.expectError({ type: 'register', name: name.toLowerCase(), password: PASSWORD }, 'name_taken');
});

test('guest login → welcome {guest:true, token, dms:[]} with the requested name', async (t) => {
  const c = await connect(server, t);
  const name = uniq('Guest');
  const w = await c.request({ type: 'login', id: 5, name });
  assertKeys(w, ['type', 'id', 'name', 'guest', 'token', 'dms', 'rooms', 'state', 'status_text'], 'guest welcome');
  assert.equal(w.type, 'welcome');
  assert.equal(w.id, 5);
  assert.equal(w.name, name);
  assert.equal(w.guest, true);
  assert.equal(typeof w.token, 'string');
  assert.ok(w.token.length > 0);
  assert.deepEqual(w.dms, []);
});

test('a guest name held by an online guest → name_taken, in any case', async (t) => {
  const name = uniq('held');
  await guest(server, t, name);
  const c = await connect(server, t);
  await c.expectError({ type: 'login', name }, 'name_taken');
  await c.expectError({ type: 'login', name: name.toUpperCase() }, 'name_taken');
});

test('a guest name is free again once its guest has disconnected', async (t) => {
  const name = uniq('gone');
  const g = await guest(server, t, name);
  await g.close();
  const c = await connect(server, t);
  // The server may take a moment to notice the disconnect; retry while it answers name_taken.
  const w = await eventually(async () => {
    const r = await c.request({ type: 'login', name });
    if (r.type === 'error' && r.code === 'name_taken') return null;
    return r;
  }, undefined, `guest name ${name} to be free after its guest left`);
  assert.equal(w.type, 'welcome', JSON.stringify(w));
  assert.equal(w.guest, true);
});

test('registered name without password, or with a wrong one → bad_credentials', async (t) => {
  const c = await connect(server, t);
  const name = uniq('cred');
  await c.register(name);
  await c.expectError({ type: 'login', name }, 'bad_credentials');
  await c.expectError({ type: 'login', name: name.toLowerCase() }, 'bad_credentials');
  await c.expectError({ type: 'login', name, password: 'wrong-password' }, 'bad_credentials');
  // The connection is still usable and not logged in.
  const w = await c.login(name, PASSWORD);
  assert.equal(w.guest, false);
});

test('a password for a name that is not registered → bad_credentials', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 'login', name: uniq('nobody'), password: PASSWORD }, 'bad_credentials');
  // Rule 38: password length rules are for register only.
  await c.expectError({ type: 'login', name: uniq('nobody'), password: 'short' }, 'bad_credentials');
});

test('token login → welcome for the same user; tokens are reusable (rule 8)', async (t) => {
  const u = await user(server, t);
  for (let i = 0; i < 3; i++) {
    const c = await connect(server, t);
    const w = await c.request({ type: 'login', id: i, token: u.token });
    assertKeys(w, ['type', 'id', 'name', 'guest', 'token', 'dms', 'rooms', 'state', 'status_text'], 'token welcome');
    assert.equal(w.type, 'welcome');
    assert.equal(w.name, u.name);
    assert.equal(w.guest, false);
    assert.equal(typeof w.token, 'string');
  }
  // The first connection is still logged in.
  await u.sync();
  await u.join(uniqRoom());
});

test('an unknown token → bad_token', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 'login', token: 'no-such-token' }, 'bad_token');
  const u = await user(server, t);
  await c.expectError({ type: 'login', token: `${u.token}x` }, 'bad_token');
});

test('a guest token logs in as that guest again while the first tab is online', async (t) => {
  const g = await guest(server, t);
  const g2 = await connect(server, t);
  const w = await g2.loginToken(g.token);
  assert.equal(w.name, g.name);
  assert.equal(w.guest, true);
  assert.deepEqual(w.dms, []);
});

test('a guest token logs in again after the guest disconnected (reconnect)', async (t) => {
  const g = await guest(server, t);
  const token = g.token;
  const name = g.name;
  g.terminate();
  await g.closed;
  const c = await connect(server, t);
  const w = await c.loginToken(token);
  assert.equal(w.name, name);
  assert.equal(w.guest, true);
});

test('login after login → already_logged_in (any login, also by token)', async (t) => {
  const u = await user(server, t);
  await u.expectError({ type: 'login', name: u.name, password: PASSWORD }, 'already_logged_in');
  await u.expectError({ type: 'login', token: u.token }, 'already_logged_in');
  await u.expectError({ type: 'login', name: uniq('other') }, 'already_logged_in');
  const g = await guest(server, t);
  await g.expectError({ type: 'login', name: uniq('other') }, 'already_logged_in');
});

test('register of another name after login → already_logged_in (rule 6)', async (t) => {
  const u = await user(server, t);
  await u.expectError({ type: 'register', name: uniq('other'), password: PASSWORD }, 'already_logged_in');
  const g = await guest(server, t);
  await g.expectError({ type: 'register', name: uniq('other'), password: PASSWORD }, 'already_logged_in');
});

test('already_logged_in outranks field validation (rule 38)', async (t) => {
  const u = await user(server, t);
  await u.expectError({ type: 'login', name: 'bad name!' }, 'already_logged_in');
  await u.expectError({ type: 'register', name: uniq('x'), password: 'short' }, 'already_logged_in');
  // A logged-in guest may register only its own name: any other one, even an invalid one, or
  // none at all, is already_logged_in before the name or password is looked at.
  const g = await guest(server, t);
  await g.expectError({ type: 'register', name: 'bad name!', password: PASSWORD }, 'already_logged_in');
  await g.expectError({ type: 'register', name: 'x'.repeat(40), password: PASSWORD }, 'already_logged_in');
  await g.expectError({ type: 'register', name: 42, password: PASSWORD }, 'already_logged_in');
  await g.expectError({ type: 'register', password: PASSWORD }, 'already_logged_in');
  await g.expectError({ type: 'register', name: uniq('x'), password: 'short' }, 'already_logged_in');
  // Its own name (in any case) goes on to field validation.
  await g.expectError({ type: 'register', name: g.name.toUpperCase(), password: 'short' }, 'bad_request');
});

test('password length: 8 and 256 bytes accepted, 7 and 257 → bad_request (rule 7)', async (t) => {
  const c = await connect(server, t);
  await c.register(uniq('p8'), '12345678');
  await c.register(uniq('p256'), 'p'.repeat(256));
  await c.register(uniq('pu8'), 'éééé'); // 4 characters, 8 bytes
  await c.expectError({ type: 'register', name: uniq('p7'), password: '1234567' }, 'bad_request');
  await c.expectError({ type: 'register', name: uniq('p257'), password: 'p'.repeat(257) }, 'bad_request');
  await c.expectError({ type: 'register', name: uniq('pu7'), password: 'ééé!' }, 'bad_request'); // 7 bytes
  await c.expectError({ type: 'register', name: uniq('p0'), password: '' }, 'bad_request');
  await c.expectError({ type: 'register', name: uniq('pn') }, 'bad_request');
});

test('a 256-byte password logs in; a 7-byte prefix of a registered password does not', async (t) => {
  const c = await connect(server, t);
  const name = uniq('plong');
  const pw = 'q'.repeat(256);
  await c.register(name, pw);
  await c.expectError({ type: 'login', name, password: pw.slice(0, 255) }, 'bad_credentials');
  const w = await c.login(name, pw);
  assert.equal(w.name, name);
});

test('names: 1..32 characters of A-Z a-z 0-9 _ - . are accepted', async (t) => {
  const c = await connect(server, t);
  const suffix = uniq('').replace(/[^a-z0-9]/gi, '');
  for (const name of ['Q', `a.b-c_D.${suffix}`.slice(0, 32), `${'x'.repeat(32 - suffix.length)}${suffix}`]) {
    assert.ok(name.length >= 1 && name.length <= 32);
    await c.register(name);
    const w = await (await connect(server, t)).login(name, PASSWORD);
    assert.equal(w.name, name);
  }
  // One-character and 32-character guests too.
  for (const name of ['g', `${'y'.repeat(32 - suffix.length)}${suffix}`]) {
    const w = await (await connect(server, t)).login(name);
    assert.equal(w.name, name);
    assert.equal(w.guest, true);
  }
});

test('invalid names → bad_name (register and login)', async (t) => {
  const c = await connect(server, t);
  for (const name of ['', 'has space', 'x'.repeat(33), 'semi;colon', 'émile', 'a/b', 'tab\tname', 'dm:a:b', 'a@b']) {
    await c.expectError({ type: 'register', name, password: PASSWORD }, 'bad_name');
    await c.expectError({ type: 'login', name }, 'bad_name');
  }
});

test('names with bidi overrides, isolates or line/paragraph separators → bad_name', async (t) => {
  const c = await connect(server, t);
  for (const ch of ['\u202a', '\u202e', '\u2066', '\u2069', '\u2028', '\u2029']) {
    await c.expectError({ type: 'register', name: `ab${ch}cd`, password: PASSWORD }, 'bad_name');
    await c.expectError({ type: 'login', name: `ab${ch}cd` }, 'bad_name');
  }
});

test('register of a name that differs from a registered one only by confusable characters → name_taken', async (t) => {
  const c = await connect(server, t);
  const base = `bill${uniq('').replace(/[^a-z]/g, 'x')}`; // no digits: the variants below are made of them
  await c.register(base);
  const lookalikes = [
    base.replace('i', 'I'), // capital i looks like l
    base.replace('ll', 'l1'),
    base.replace('ll', 'LI'),
    `${base}_`,
    `${base}.`,
    `${base}-_.`,
  ];
  for (const name of lookalikes) {
    await c.expectError({ type: 'register', name, password: PASSWORD }, 'name_taken');
  }
  // O and 0 too, in both directions.
  const zero = `b0b${uniq('').replace(/[^a-z]/g, 'x')}`;
  await c.register(zero);
  await c.expectError({ type: 'register', name: zero.replace('0', 'O'), password: PASSWORD }, 'name_taken');
  await c.expectError({ type: 'register', name: zero.replace('0', 'o'), password: PASSWORD }, 'name_taken');
  // A name that only shares a prefix, or has the mark inside, is another name.
  await c.register(`${base}_x`);
  await c.register(base.replace('ll', 'l'));
});

test('a guest may not take a look-alike of a registered name or of an online guest\'s name', async (t) => {
  const base = `lola${uniq('').replace(/[^a-z]/g, 'x')}`;
  const c = await connect(server, t);
  await c.register(base);
  for (const name of [base.replace('o', '0'), base.replace('l', 'I'), `${base}.`]) {
    await (await connect(server, t)).expectError({ type: 'login', name }, 'name_taken');
  }
  const g = await guest(server, t, `mill${uniq('').replace(/[^a-z]/g, 'x')}`);
  const lookalike = g.name.replace('ill', 'iI1');
  await (await connect(server, t)).expectError({ type: 'login', name: lookalike }, 'name_taken');
  await c.expectError({ type: 'register', name: lookalike, password: PASSWORD }, 'name_taken');
  // The guest itself may still register its own name, whose look-alikes stay taken: now by the
  // registered name, no longer by an online guest.
  assert.equal((await g.request({ type: 'register', name: g.name, password: PASSWORD })).type, 'registered');
  await (await connect(server, t)).expectError({ type: 'login', name: lookalike }, 'name_taken');
  await g.close();
  await (await connect(server, t)).expectError({ type: 'login', name: lookalike }, 'name_taken');
  // Once the guest has gone, its look-alike is free for another guest... unless registered since.
  const h = await guest(server, t, `nell${uniq('').replace(/[^a-z]/g, 'x')}`);
  await h.close();
  await eventually(async () => {
    const p = await connect(server, t);
    const r = await p.request({ type: 'login', name: h.name.replace('ll', '11') });
    p.terminate();
    return r.type === 'welcome';
  }, undefined, 'the look-alike of a guest who left to be free');
});

test('a logged-in guest may register its own name; every tab becomes that user (rules 6, 39)', async (t) => {
  const g = await guest(server, t);
  const g2 = await tab(server, t, g);
  const r = await user(server, t);
  // A dm between r and the guest, before the guest registers.
  const room = dmRoom(g.name, r.name);
  await r.dm(g.name, 'before registration');
  await g.nextMessage(room);
  await g2.nextMessage(room);
  await g2.expectError({ type: 'history', room }, 'forbidden');

  const reg = await g.request({ type: 'register', id: 77, name: g.name, password: PASSWORD });
  assert.equal(reg.type, 'registered', JSON.stringify(reg));
  assert.equal(reg.id, 77);
  assert.equal(reg.name, g.name);

  // Both tabs are now the registered user: dm history is readable (rule 19), without what
  // the guest received before the account existed (rule 40).
  for (const c of [g, g2]) {
    const h = await c.expect({ type: 'history', room }, 'history');
    assert.deepEqual(h.messages, [], `${c.label}: dm history shows pre-registration messages`);
  }
  // Password login works, and is a registered login.
  const w = await (await connect(server, t)).login(g.name, PASSWORD);
  assert.equal(w.guest, false);
  // The second tab cannot register again.
  await g2.expectError({ type: 'register', name: g.name, password: PASSWORD }, 'already_logged_in');
  // New dms after registration are readable by both tabs.
  await r.dm(g.name, 'after registration');
  for (const c of [g, g2]) {
    const m = await c.nextMessage(room, (x) => x.text === 'after registration');
    const h = await c.expect({ type: 'history', room }, 'history');
    assert.deepEqual(h.messages, [m]);
  }
});

test('a guest registering its own name gets registered {type,id,name} exactly, as any register', async (t) => {
  const g = await guest(server, t);
  const reg = await g.request({ type: 'register', id: 78, name: g.name, password: PASSWORD });
  assert.deepEqual(reg, { type: 'registered', id: 78, name: g.name });
});

test('a guest cannot register a different name → already_logged_in', async (t) => {
  const g = await guest(server, t);
  await g.expectError({ type: 'register', name: uniq('notmine'), password: PASSWORD }, 'already_logged_in');
});

test('register of a name held by an online guest (another session) → name_taken (rule 39)', async (t) => {
  const g = await guest(server, t);
  const c = await connect(server, t);
  await c.expectError({ type: 'register', name: g.name, password: PASSWORD }, 'name_taken');
  await c.expectError({ type: 'register', name: g.name.toUpperCase(), password: PASSWORD }, 'name_taken');
  // A guest login of a registered name: it has no password → bad_credentials.
  const u = await user(server, t);
  await (await connect(server, t)).expectError({ type: 'login', name: u.name }, 'bad_credentials');
});

test('a guest token no longer logs in once the name is registered by someone else', async (t) => {
  const g = await guest(server, t);
  const token = g.token;
  const name = g.name;
  await g.close();
  const c = await connect(server, t);
  // Once the guest is offline its name can be registered (retry while the disconnect settles).
  await eventually(async () => {
    const r = await c.request({ type: 'register', name, password: PASSWORD });
    if (r.type === 'registered') return true;
    assert.equal(r.code, 'name_taken', JSON.stringify(r));
    return false;
  }, undefined, `register of ${name} after its guest left`);
  await (await connect(server, t)).expectError({ type: 'login', token }, 'bad_token');
});

test('login with neither name nor token, or ill-typed fields → bad_request', async (t) => {
  const c = await connect(server, t);
  await c.expectError({ type: 'login' }, 'bad_request');
  await c.expectError({ type: 'login', name: 42 }, 'bad_request');
  await c.expectError({ type: 'login', token: 42 }, 'bad_request');
  await c.expectError({ type: 'login', name: uniq('x'), password: 12345678 }, 'bad_request');
  await c.expectError({ type: 'register', name: ['a'], password: PASSWORD }, 'bad_request');
  await c.expectError({ type: 'register', name: uniq('x'), password: 123456789 }, 'bad_request');
  await c.expectError({ type: 'register', password: PASSWORD }, 'bad_request');
});

test('the same user may be connected many times at once (web tabs)', async (t) => {
  const u = await user(server, t);
  const tabs = [];
  for (let i = 0; i < 4; i++) {
    const c = await connect(server, t);
    await c.login(u.name, PASSWORD);
    tabs.push(c);
  }
  const room = uniqRoom();
  for (const c of tabs) await c.join(room);
  await tabs[0].say(room, 'to all tabs');
  for (const c of tabs) await c.nextMessage(room, (m) => m.text === 'to all tabs');
  // Room membership is per connection: the first connection did not join.
  await u.sync();
  assert.equal(u.pending().filter((m) => m.type === 'message').length, 0);
});
