// Presence, members, guests' names, large rooms' counts and a user's dm rooms across nodes: two
// or three parley nodes on one PostgreSQL (tests/tools/pg.sh) and one redis-server
// (tests/tools/redis.mjs), both started here and stopped at the end. Each test gets a database
// and a Redis DB of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ChatClient, PASSWORD, dmRoom, eventually, uniq, withTimeout } from '../chat/lib/chat.mjs';
import { holdingProxy, shareEngines } from './lib/cluster.mjs';

const LEASE_S = 1; // --node-lease: a killed node is reaped within 0.75 s of its last refresh
const engines = shareEngines();
// n nodes of one chat (lib/cluster.mjs, shareEngines), reaped within the lease above.
const cluster = (t, n, extra = [], env = {}, broker = undefined) =>
  engines.cluster(t, n, ['--node-lease', String(LEASE_S), ...extra], env, broker);

async function guestOn(t, server, name = uniq('g')) {
  const c = await ChatClient.connect(server, { label: `${name}@${server.args[server.args.indexOf("--node") + 1]}` });
  t.after(() => c.terminate());
  const w = await c.login(name);
  assert.equal(w.guest, true);
  return c;
}

const joinGeneral = (c) => c.expect({ type: 'join', room: 'general' }, 'joined');
// A guest on server, in general.
async function inGeneral(t, server, name) {
  const c = await guestOn(t, server, name);
  await joinGeneral(c);
  return c;
}
const isPresence = (user, state) => (m) =>
  m.type === 'presence' && m.room === 'general' && m.user === user && m.state === state;

test('a user joining on one node is seen by a member on another: presence, who and joined', async (t) => {
  const [a, b] = await cluster(t, 2);
  const bob = await guestOn(t, b, uniq('bob'));
  await joinGeneral(bob);
  const amy = await guestOn(t, a, uniq('amy'));
  await joinGeneral(amy);
  await bob.next(isPresence(amy.name, 'online'), undefined, `presence of ${amy.name} online on the other node`);

  const who = await bob.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual([...who.members].sort(), [amy.name, bob.name].sort(), 'who on node b lists node a\'s member');
  assert.equal(who.member_count, 2);

  // A later joiner on b is told both, in joined; amy hears of it across the nodes.
  const cat = await guestOn(t, b, uniq('cat'));
  const joined = await joinGeneral(cat);
  assert.deepEqual([...joined.members].sort(), [amy.name, bob.name, cat.name].sort());
  assert.equal(joined.member_count, 3);
  await amy.next(isPresence(cat.name, 'online'), undefined, 'presence of the joiner on node b, on node a');

  // A status set on a crosses to b (best effort, but nothing is lost here).
  await amy.expect({ type: 'status', state: 'away', text: 'lunch' }, 'status');
  const p = await bob.next((m) => m.type === 'presence' && m.user === amy.name && m.state === 'away', undefined, 'away across nodes');
  assert.equal(p.status_text, 'lunch');
  const who2 = await bob.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual(who2.away, [amy.name]);
  assert.deepEqual(who2.status_text, { [amy.name]: 'lunch' });

  // Leaving on a is an offline on b, and who there no longer lists amy.
  await amy.expect({ type: 'leave', room: 'general' }, 'left');
  await bob.next(isPresence(amy.name, 'offline'), undefined, 'presence offline across nodes');
  const who3 = await bob.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual([...who3.members].sort(), [bob.name, cat.name].sort());
});

test('a user on two nodes stays online until its last node lets go', async (t) => {
  const [a, b] = await cluster(t, 2);
  const watcher = await guestOn(t, b, uniq('w'));
  await joinGeneral(watcher);
  const name = uniq('two');
  const onA = await ChatClient.connect(a, { label: 'two@a' });
  t.after(() => onA.terminate());
  await onA.register(name);
  await onA.login(name, PASSWORD);
  await joinGeneral(onA);
  await watcher.next(isPresence(name, 'online'), undefined, 'online from node a');
  const onB = await ChatClient.connect(b, { label: 'two@b' });
  t.after(() => onB.terminate());
  await onB.login(name, PASSWORD);
  await joinGeneral(onB);
  await onA.close();
  // Still in the room on b: no offline. Then b's connection leaves: offline.
  await onB.expect({ type: 'leave', room: 'general' }, 'left');
  const first = await watcher.next((m) => m.type === 'presence' && m.user === name, undefined, 'the next presence of the user');
  assert.equal(first.state, 'offline');
  const who = await watcher.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual(who.members, [watcher.name]);
});

test('a guest name held on one node is refused on another (but not to its own session), and free once its guest leaves', async (t) => {
  const nodes = await cluster(t, 2);
  const [a, b] = nodes;
  const name = uniq('zed');
  const holder = await guestOn(t, a, name);
  const rival = await ChatClient.connect(b, { label: 'rival@b' });
  t.after(() => rival.terminate());
  await rival.expectError({ type: 'login', name: name.toUpperCase() }, 'name_taken');
  // Nor may it be registered there while the guest holds it.
  await rival.expectError({ type: 'register', name, password: PASSWORD }, 'name_taken');
  // The guest's own session may have connections on both nodes (its token).
  const twin = await ChatClient.connect(b, { label: 'twin@b' });
  t.after(() => twin.terminate());
  const tw = await twin.loginToken(holder.token);
  assert.equal(tw.name, name);
  await holder.close();
  await twin.close();
  // The release reaches Redis after the close: wait for the name's key to go, then it is free.
  const key = `parley:guest:${name.toLowerCase()}`;
  const deadline = Date.now() + 10000;
  while (engines.redis.cli('-n', String(nodes.db), 'EXISTS', key) !== '0') {
    assert.ok(Date.now() < deadline, `${key} still held after the guest left`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const w = await rival.login(name);
  assert.equal(w.name, name);
});

test('kill -9 of a node: its users go offline on the others within the lease, its guest name is free', async (t) => {
  const [a, b, c] = await cluster(t, 3);
  const onA = await inGeneral(t, a, uniq('wa'));
  const onB = await inGeneral(t, b, uniq('wb'));
  const victimName = uniq('vic');
  await inGeneral(t, c, victimName);
  await onA.next(isPresence(victimName, 'online'), undefined, 'the victim online on a');
  await onB.next(isPresence(victimName, 'online'), undefined, 'the victim online on b');
  await c.kill();
  // Reaped by the next lease refresh of a or b after the victim's lease ran out.
  await onA.next(isPresence(victimName, 'offline'), 10000, 'the dead node\'s user offline on a');
  await onB.next(isPresence(victimName, 'offline'), 10000, 'the dead node\'s user offline on b');
  const who = await onB.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual([...who.members].sort(), [onA.name, onB.name].sort());
  // The reaper freed the name in the same step as it published the leave.
  const again = await guestOn(t, b, victimName);
  assert.equal(again.name, victimName);
});

test('a large room counts its members on all nodes', async (t) => {
  const [a, b] = await cluster(t, 2, ['--presence-limit', '2'], { PARLEY_TEST_TICK_MS: '200' });
  const a1 = await guestOn(t, a, uniq('a1'));
  await joinGeneral(a1);
  const a2 = await guestOn(t, a, uniq('a2'));
  await joinGeneral(a2);
  const b1 = await guestOn(t, b, uniq('b1'));
  await joinGeneral(b1);
  // Three users over two nodes, above the limit of 2: large on both, counted as 3 on both.
  const cb = await b1.next((m) => m.type === 'count' && m.large === true && m.member_count === 3, 10000, 'count 3 on b');
  assert.equal(cb.room, 'general');
  await a1.next((m) => m.type === 'count' && m.large === true && m.member_count === 3, 10000, 'count 3 on a');
});

test('members who joined on a node cut off from Redis reach the other node, every one, once it is back', async (t) => {
  // b reaches Redis through a proxy: cut, and its reconnections held, while three guests join
  // general there; let go, b syncs the room's members here into Redis (hub_nodes_on_state), and a
  // member on a sees all three.
  const proxy = await holdingProxy(t, engines.redis.port);
  const [a, b] = await cluster(t, 2, [], {}, (i, url) => (i === 1 ? proxy.url : url));
  const amy = await inGeneral(t, a, uniq('amy'));
  const back = await cutOff(proxy, b);
  const joiners = [];
  for (let i = 0; i < 3; i++) {
    const g = await guestOn(t, b, uniq('cut'));
    await joinGeneral(g);
    joiners.push(g.name);
  }
  await back();
  const want = JSON.stringify([amy.name, ...joiners].sort());
  const who = async () => JSON.stringify([...(await amy.expect({ type: 'who', room: 'general' }, 'members')).members].sort());
  await eventually(async () => (await who()) === want, 10000, `who on a to list ${joiners.join(', ')}`).catch(() => {});
  assert.equal(await who(), want, 'who on a lists every member b had while cut off');
});

// Cuts node off from Redis (proxy: its traffic, reconnections held) and waits until it notices;
// resolves to back(), which lets it reconnect and waits until it is up again.
async function cutOff(proxy, node) {
  const count = (msg) => node.logLines().filter((l) => l.fields.msg === msg).length;
  const [down0, up0] = [count('broker_down'), count('broker_up')];
  proxy.holdNew();
  proxy.cut();
  await eventually(() => count('broker_down') > down0, 10000, 'the node to find Redis gone');
  return async () => {
    proxy.release();
    await eventually(() => count('broker_up') > up0, 10000, 'the node to be back on Redis');
  };
}

// A plain Redis subscriber of one channel: seen(text) resolves once a message holding text came.
async function subscriber(t, channel) {
  const sock = net.connect(engines.redis.port, '127.0.0.1');
  t.after(() => sock.destroy());
  let data = '';
  const waiters = [];
  sock.on('data', (d) => {
    data += d.toString('latin1');
    for (const w of waiters) if (data.includes(w.text)) w.resolve();
  });
  const seen = (text, what) =>
    withTimeout(new Promise((resolve) => (data.includes(text) ? resolve() : waiters.push({ text, resolve }))), 10000, what);
  sock.write(`SUBSCRIBE ${channel}\r\n`);
  await seen('subscribe', `the subscription of ${channel}`);
  return { seen };
}

test("a dm room made on one node, and a saved room written there, are in the recipient's welcome on another, with their seqs and counts", async (t) => {
  const [a, b] = await cluster(t, 2);
  const alice = await ChatClient.connect(a, { label: 'alice@a' });
  t.after(() => alice.terminate());
  const [an, bn, room] = [uniq('alice'), uniq('bob'), uniq('r')];
  await alice.register(bn);
  await alice.register(an);
  await alice.login(an, PASSWORD);
  const bobThen = await ChatClient.connect(b, { label: 'bob@b' });
  await bobThen.login(bn, PASSWORD);
  await bobThen.join(room); // saved for bob, on b
  await bobThen.close();
  await alice.join(room);
  await alice.say(room, 'one');
  const said = await alice.say(room, `two @${bn}`);
  const first = await alice.dm(bn, 'one');
  const second = await alice.dm(bn, `two @${bn}`);
  // b stored nothing of these since and heard nothing of them: its welcome reads the store.
  const bob = await ChatClient.connect(b, { label: 'bob@b' });
  t.after(() => bob.terminate());
  const w = await bob.login(bn, PASSWORD);
  assert.deepEqual(w.dms, [{ room: dmRoom(an, bn), seq: second.seq, read: 0, unread: 2, mentions: 1 }]);
  assert.equal(second.seq, first.seq + 1);
  assert.deepEqual(w.rooms, [{ name: room, seq: said.seq, read: said.seq - 2, unread: 2, mentions: 1 }]);
});

test("a dm stored in the instant after the recipient's login on another node still arrives live", async (t) => {
  // b's Redis traffic goes through a proxy, held while bob logs in there: b's subscription of
  // bob's channel reaches Redis only after alice's dm was published on it (which a subscriber
  // here sees), so b never hears that dm; it finds it in the store once the channel is ready.
  const proxy = await holdingProxy(t, engines.redis.port);
  const nodes = await cluster(t, 2, ['--node-lease', '10'], {}, (i, url) => (i === 1 ? proxy.url : url));
  const [a, b] = nodes;
  const [an, bn] = [uniq('alice'), uniq('bob')];
  const alice = await ChatClient.connect(a, { label: 'alice@a' });
  t.after(() => alice.terminate());
  await alice.register(bn);
  await alice.register(an);
  await alice.login(an, PASSWORD);
  const before = await alice.dm(bn, 'before bob came');
  const tap = await subscriber(t, `parley:${nodes.db}:u:${bn.toLowerCase()}`);

  proxy.hold();
  const bob = await ChatClient.connect(b, { label: 'bob@b' });
  t.after(() => bob.terminate());
  const w = await bob.login(bn, PASSWORD);
  assert.deepEqual(w.dms.map((d) => [d.room, d.seq]), [[dmRoom(an, bn), before.seq]]);
  const lost = await alice.dm(bn, 'while b is not subscribed yet');
  await tap.seen('while b is not subscribed yet', "alice's dm published on bob's channel");
  proxy.release();

  const m = await bob.nextMessage(dmRoom(an, bn), () => true, 10000);
  assert.equal(m.text, 'while b is not subscribed yet');
  assert.equal(m.seq, lost.seq);
  // And the next one, heard through Redis, once.
  const next = await alice.dm(bn, 'after');
  const m2 = await bob.nextMessage(dmRoom(an, bn), () => true, 10000);
  assert.deepEqual([m2.seq, m2.text], [next.seq, 'after']);
  await bob.sync();
  assert.equal(bob.pending().filter((x) => x.room === dmRoom(an, bn)).length, 0, 'no dm twice');
});

test("a guest's dm stored in the instant after its login on another node still arrives live", async (t) => {
  // The guest gue is on a (where alice can name it in a dm) and logs in with its token on b,
  // whose subscription of gue's channel is held at the proxy until alice's dm, stored on a, was
  // published there: b never hears that dm. A guest's welcome lists no dm room, but b reads its
  // dm rooms' seqs at the login all the same and looks in the store once the channel is ready.
  const proxy = await holdingProxy(t, engines.redis.port);
  const nodes = await cluster(t, 2, ['--node-lease', '10'], {}, (i, url) => (i === 1 ? proxy.url : url));
  const [a, b] = nodes;
  const an = uniq('alice');
  const alice = await ChatClient.connect(a, { label: 'alice@a' });
  t.after(() => alice.terminate());
  await alice.register(an);
  await alice.login(an, PASSWORD);
  const gueA = await guestOn(t, a, uniq('gue'));
  const gn = gueA.name;
  const room = dmRoom(an, gn);
  const before = await alice.dm(gn, 'before the guest came to b');
  await gueA.nextMessage(room, (m) => m.seq === before.seq, 10000);
  const tap = await subscriber(t, `parley:${nodes.db}:u:${gn.toLowerCase()}`);

  proxy.holdMarked(':u:');
  const gueB = await ChatClient.connect(b, { label: 'gue@b' });
  t.after(() => gueB.terminate());
  const w = await gueB.loginToken(gueA.token);
  assert.equal(w.guest, true);
  assert.deepEqual(w.dms, [], "a guest's welcome lists no dm room (rule 19)");
  const lost = await alice.dm(gn, 'while b is not subscribed yet');
  await tap.seen('while b is not subscribed yet', "alice's dm published on the guest's channel");
  proxy.release();

  const m = await gueB.nextMessage(room, () => true, 10000);
  assert.deepEqual([m.seq, m.text], [lost.seq, 'while b is not subscribed yet']);
  const next = await alice.dm(gn, 'after');
  const m2 = await gueB.nextMessage(room, () => true, 10000);
  assert.deepEqual([m2.seq, m2.text], [next.seq, 'after']);
  await gueB.sync();
  assert.equal(gueB.pending().filter((x) => x.room === room).length, 0, 'no dm twice');
});

test('a node stopped cleanly says goodbye: its users go offline on the other node at once, not after the lease', async (t) => {
  // A lease of 120 s: no reap within the test, so only the stopped node's goodbye (its lease
  // and what it held deleted from Redis as it stops) can explain what the other node sees.
  const nodes = await cluster(t, 2, ['--node-lease', '120']);
  const [a, b] = nodes;
  const watcher = await inGeneral(t, a, uniq('w'));
  const leaverName = uniq('lv');
  await inGeneral(t, b, leaverName);
  await watcher.next(isPresence(leaverName, 'online'), undefined, 'the leaver online on a');
  const info = await b.stop();
  assert.equal(info.code, 0);
  await a.waitForLog((l) => l.fields.msg === 'broker_node_left', 10000, "a told of b's goodbye");
  await watcher.next(isPresence(leaverName, 'offline'), 10000, "the stopped node's user offline on a");
  const who = await watcher.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual(who.members, [watcher.name]);
  // Nothing of b is left in Redis: its lease, its users, its guests' names.
  const redis = (...args) => engines.redis.cli('-n', String(nodes.db), ...args);
  assert.equal(redis('ZCARD', 'parley:nodes'), '1', 'only a is left among the nodes');
  assert.equal(redis('EXISTS', `parley:user:${leaverName.toLowerCase()}`), '0');
  assert.equal(redis('EXISTS', `parley:guest:${leaverName.toLowerCase()}`), '0');
});

test('dms stored for several users while their node was cut off from Redis reach each of them once it is back', async (t) => {
  // b is cut off from Redis (its reconnections held) while alice, on a, sends a first dm to each
  // of bob and carol, on b: b heard nothing of those rooms before and hears nothing of these
  // dms. Back on Redis, b reads the dm rooms of all its users at once (one read for every user
  // whose channel the reconnect made ready) and delivers each dm once.
  const proxy = await holdingProxy(t, engines.redis.port);
  const [a, b] = await cluster(t, 2, ['--node-lease', '10'], {}, (i, url) => (i === 1 ? proxy.url : url));
  const [an, bn, cn] = [uniq('alice'), uniq('bob'), uniq('carol')];
  const alice = await ChatClient.connect(a, { label: 'alice@a' });
  t.after(() => alice.terminate());
  for (const name of [bn, cn, an]) await alice.register(name);
  await alice.login(an, PASSWORD);
  const onB = [];
  for (const name of [bn, cn]) {
    const c = await ChatClient.connect(b, { label: `${name}@b` });
    t.after(() => c.terminate());
    await c.login(name, PASSWORD);
    onB.push(c);
  }
  const back = await cutOff(proxy, b);
  const sent = [await alice.dm(bn, 'to bob while b was away'), await alice.dm(cn, 'to carol while b was away')];
  await back();
  for (const [i, name] of [bn, cn].entries()) {
    const m = await onB[i].nextMessage(dmRoom(an, name), () => true, 10000);
    assert.deepEqual([m.seq, m.text], [sent[i].seq, `to ${i ? 'carol' : 'bob'} while b was away`]);
    await onB[i].sync();
    assert.equal(onB[i].pending().filter((x) => x.room === dmRoom(an, name)).length, 0, 'no dm twice');
  }
});
