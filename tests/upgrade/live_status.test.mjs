// Live upgrades and status (protocol 1.1 rule 69): a status lives in the hub's memory, which is
// not handed over; the record (version 5, HR_STATUS) carries it with each connection, and the new
// process's hub takes it from the moved connections. So after an upgrade the user is still away,
// for a new login (welcome), for others (joined, who) and for presence that follows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { guest, tab, uniqRoom, user } from '../chat/lib/chat.mjs';
import { telnetLogin } from '../chat/lib/telnet.mjs';
import { Lineage } from './lib/upgrade.mjs';

test('live: statuses survive the upgrade (WebSocket and telnet users, guests)', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '0']);
  const { server } = lineage;
  const room = uniqRoom('up');
  const alice = await user(server, t);
  const carol = await guest(server, t);
  const bob = await guest(server, t);
  await alice.join(room);
  await carol.join(room);
  await bob.join(room);
  await alice.expect({ type: 'status', state: 'away', text: 'lunch' }, 'status');
  await carol.expect({ type: 'status', state: 'online', text: 'reviewing' }, 'status');
  assert.equal((await bob.next((m) => m.type === 'presence' && m.user === alice.name)).state, 'away');
  await bob.join('general');
  const tn = await telnetLogin(server, t, 'TelStatus');
  tn.send('/away on a call'); // telnet shows nothing for it (rule 76): bob sees the presence
  await bob.next((m) => m.type === 'presence' && m.room === 'general' && m.user === 'TelStatus' && m.state === 'away');

  const { newPid } = await lineage.upgrade();
  const records = await lineage.waitLog(newPid, 'handover_records');
  assert.ok(Number(records.fields.versions) >= 5, `records of version ${records.fields.versions}`);

  // Still the same connections: bob's who and a rejoin show the statuses as before.
  const who = await bob.expect({ type: 'who', room }, 'members');
  assert.deepEqual(who.away, [alice.name]);
  assert.deepEqual(who.status_text, { [alice.name]: 'lunch', [carol.name]: 'reviewing' });
  const general = await bob.expect({ type: 'who', room: 'general' }, 'members');
  assert.deepEqual(general.away, ['TelStatus']);
  assert.deepEqual(general.status_text, { TelStatus: 'on a call' });
  // A new connection of each user is welcomed with its status.
  const alice2 = await tab(server, t, alice);
  assert.deepEqual([alice2.welcome.state, alice2.welcome.status_text], ['away', 'lunch']);
  const carol2 = await tab(server, t, carol);
  assert.deepEqual([carol2.welcome.state, carol2.welcome.status_text], ['online', 'reviewing']);
  // And changes after the upgrade are told as before (the hub knows alice's rooms again).
  await alice.expect({ type: 'status', state: 'online' }, 'status');
  assert.deepEqual(await alice2.next((m) => m.type === 'status'), { type: 'status', state: 'online', text: '' });
  assert.deepEqual(await bob.next((m) => m.type === 'presence' && m.user === alice.name), {
    type: 'presence', room, user: alice.name, state: 'online',
  });
  assert.equal((await lineage.healthz()).pid, newPid);
});

test('live: from a writer of record version 4 (no HR_STATUS), a status falls back to online', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '0'], { env: { PARLEY_TEST_RECORD_VERSION: '4' } });
  const { server } = lineage;
  const alice = await user(server, t);
  await alice.expect({ type: 'status', state: 'away', text: 'lunch' }, 'status');
  const { newPid } = await lineage.upgrade();
  const records = await lineage.waitLog(newPid, 'handover_records');
  assert.equal(records.fields.versions, '4');
  // The connection moved (no reconnect) and is counted: the user is online without text.
  const alice2 = await tab(server, t, alice);
  assert.deepEqual([alice2.welcome.state, alice2.welcome.status_text], ['online', '']);
  assert.ok(alice.isOpen, 'the connection moved, it was not closed');
});
