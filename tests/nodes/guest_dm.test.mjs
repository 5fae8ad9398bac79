// A dm to a guest online on another node only: the sender's node does not know the guest and
// asks Redis which live node holds its name (and how the guest shows it). Two parley nodes on
// one PostgreSQL and one redis-server, started here and stopped at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ChatClient, dmRoom, eventually, uniq } from '../chat/lib/chat.mjs';
import { telnetLogin } from '../chat/lib/telnet.mjs';
import { shareEngines } from './lib/cluster.mjs';

const engines = shareEngines();

async function guestOn(t, server, name) {
  const c = await ChatClient.connect(server, { label: `${name}@${server.args[server.args.indexOf('--node') + 1]}` });
  t.after(() => c.terminate());
  const w = await c.login(name);
  assert.equal(w.guest, true);
  return c;
}

function psql(url, sql) {
  const r = spawnSync('psql', ['-X', '-tA', '-F', '|', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql ${sql}: ${r.stderr}`);
  return r.stdout.trim();
}

test('a dm to a guest connected only to another node is stored and delivered, with the names as shown; a name nobody holds is no_such_user', async (t) => {
  const nodes = await engines.cluster(t, 2);
  const [a, b] = nodes;
  const sender = await guestOn(t, a, uniq('SenDer'));
  const peer = await guestOn(t, b, uniq('PeeR'));
  const room = dmRoom(sender.name, peer.name);

  // Named in lower case: the room is the canonical one, delivered to the peer on b once.
  const ack = await sender.dm(peer.name.toLowerCase(), 'across nodes');
  assert.equal(ack.room, room);
  const got = await peer.nextMessage(room, () => true, 10000);
  assert.deepEqual([got.seq, got.from, got.text], [ack.seq, sender.name, 'across nodes']);
  const own = await sender.nextMessage(room, () => true, 10000);
  assert.deepEqual([own.seq, own.from], [ack.seq, sender.name]);

  // The peer answers from b (it knows the sender only through Redis as well).
  const back = await peer.dm(sender.name, 'and back');
  assert.deepEqual([back.room, back.seq], [room, ack.seq + 1]);
  const heard = await sender.nextMessage(room, () => true, 10000);
  assert.deepEqual([heard.seq, heard.from, heard.text], [back.seq, peer.name, 'and back']);
  const echo = await peer.nextMessage(room, () => true, 10000);
  assert.equal(echo.seq, back.seq, 'the first dm came to the peer once, then its own reply');
  await peer.sync();
  assert.deepEqual(peer.pending().filter((m) => m.room === room), [], 'no dm twice');

  // Both are in the room's history in the shared store, in order, with the senders as shown.
  assert.equal(psql(nodes.store, `SELECT string_agg(seq || '|' || sender || '|' || text, ',' ORDER BY seq) FROM events WHERE room = '${room}'`),
    `${ack.seq}|${sender.name}|across nodes,${back.seq}|${peer.name}|and back`);

  // A telnet guest on a: its dm line names the peer as the peer shows its name, not as typed.
  const tel = await telnetLogin(a, t, uniq('TeL'));
  await tel.send(`/msg ${peer.name.toLowerCase()} hi from telnet`);
  await tel.nextLine(`[dm] ${tel.name} -> ${peer.name}: hi from telnet`, 10000, 'the dm line with the peer as shown');
  const fromTel = await peer.nextMessage(dmRoom(tel.name, peer.name), () => true, 10000);
  assert.deepEqual([fromTel.from, fromTel.text], [tel.name, 'hi from telnet']);

  // Nobody holds this name: no_such_user, as on one node.
  await sender.expectError({ type: 'send', to: uniq('nobody'), text: 'anyone?' }, 'no_such_user');
  // The peer gone from b, its name is free again: no_such_user too.
  await peer.close();
  await eventually(async () => {
    const r = await sender.request({ type: 'send', to: peer.name, text: 'gone?' });
    if (r.type === 'ack') return false;
    assert.equal(r.code, 'no_such_user', JSON.stringify(r));
    return true;
  }, undefined, 'a dm to the departed guest to answer no_such_user');
});
