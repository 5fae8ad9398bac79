// Telnet and topic, roles, moderation (protocol 1.1 rules 36, 76, 77): the exact lines of
// topic, role, kick, ban, unban, mute, unmute and kicked; the topic after the join notice;
// /topic, /topic TEXT, /topic -, /kick, /ban, /unban, /mute, /unmute, /op, /deop; rule 36 after
// a kick or ban.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, uniq, uniqRoom, user } from './lib/chat.mjs';
import { telnetLogin } from './lib/telnet.mjs';
import { adminClient, startAdminServer } from './lib/mod.mjs';

let server;

before(async () => {
  server = await startAdminServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

// A registered user on telnet (logged in with /login at the name prompt).
async function telnetUser(t) {
  const ws = await user(server, t);
  const tn = await telnetLogin(server, t, ws.name, { line: `/login ${ws.name} ${PASSWORD}` });
  return { tn, ws, name: ws.name };
}

// alice on telnet owns a fresh room (current); bob (WebSocket) and carol (telnet guest) in it.
async function setup(t) {
  const alice = await telnetUser(t);
  const room = uniqRoom();
  alice.tn.send(`/join ${room}`);
  await alice.tn.nextLine(`* You joined #${room} (1 online).`);
  const bob = await user(server, t);
  await bob.join(room);
  const carolName = uniq('carol');
  const carol = await telnetLogin(server, t, carolName);
  carol.send(`/join ${room}`);
  await carol.nextLine(`* You joined #${room} (3 online).`);
  return { alice: alice.tn, aliceName: alice.name, aliceWs: alice.ws, bob, carol, carolName, room };
}

test('/topic: none, set (the exact line to telnet, the event to WebSocket), shown after the join notice, cleared', async (t) => {
  const { alice, aliceName, bob, carol, room } = await setup(t);
  alice.send('/topic');
  assert.equal(await alice.nextLine(/topic/), `* #${room} has no topic.`);
  alice.send('/topic   Release on Friday  ');
  const line = `* ${aliceName} set the topic of #${room}: Release on Friday`;
  assert.equal(await alice.nextLine(/topic/), line);
  assert.equal(await carol.nextLine(/topic/), line);
  const ev = await bob.next((m) => m.type === 'topic');
  assert.equal(ev.text, 'Release on Friday');
  // A new telnet member sees it right after its join notice.
  const dave = await telnetUser(t);
  dave.tn.send(`/join ${room}`);
  await dave.tn.until(`* You joined #${room} (4 online).`);
  const next = await dave.tn.nextLine(() => true);
  assert.equal(next, `* Topic of #${room}: Release on Friday`);
  carol.send('/topic');
  assert.equal(await carol.nextLine(/Topic/), `* Topic of #${room}: Release on Friday`);
  // A member may not set it; a tab is a control character.
  carol.send('/topic mine now');
  assert.match(await carol.nextLine(/^!/), /^! forbidden: /);
  alice.send('/topic a\ttab');
  assert.match(await alice.nextLine(/^!/), /^! bad_request: /);
  alice.send('/topic -');
  assert.equal(await alice.nextLine(/cleared/), `* ${aliceName} cleared the topic of #${room}`);
  assert.equal(await carol.nextLine(/cleared/), `* ${aliceName} cleared the topic of #${room}`);
  alice.send('/topic');
  assert.equal(await alice.nextLine(/topic/), `* #${room} has no topic.`);
  alice.assertCrlf();
});

test('/op and /deop: the role lines; an admin making an owner', async (t) => {
  const { alice, aliceName, bob, carol, room } = await setup(t);
  alice.send(`/op ${bob.name.toUpperCase()}`);
  assert.equal(await carol.nextLine(/made/), `* ${aliceName} made ${bob.name} an op in #${room}`);
  assert.equal((await bob.join(room)).role, 'op');
  alice.send(`/deop ${bob.name}`);
  assert.equal(await carol.nextLine(/made/), `* ${aliceName} made ${bob.name} a member in #${room}`);
  const adm = await adminClient(server, t);
  await adm.join(room);
  await adm.expect({ type: 'role', room, user: bob.name, role: 'owner' }, 'ack');
  assert.equal(await carol.nextLine(/made/), `* ${adm.name} made ${bob.name} the owner of #${room}`);
  alice.send(`/op ${bob.name}`);
  assert.match(await alice.nextLine(/^!/), /^! forbidden: /);
  carol.send(`/op ${aliceName}`);
  assert.match(await carol.nextLine(/^!/), /^! forbidden: /);
  alice.send('/op');
  assert.match(await alice.nextLine(/^!/), /^! bad_request: /);
  alice.send('/op not@name');
  assert.match(await alice.nextLine(/^!/), /^! bad_name: /);
});

test('/kick: the kick line to the room, "You were kicked" to the kicked, whose current room falls back (rule 36)', async (t) => {
  const { alice, aliceName, bob, carol, carolName, room } = await setup(t);
  alice.send(`/kick ${carolName} spam  `);
  assert.equal((await alice.until(/kicked/)).match, `* ${carolName} was kicked from #${room} by ${aliceName} (spam)`);
  assert.equal(await carol.nextLine(/kicked/), `* You were kicked from #${room} by ${aliceName} (spam)`);
  const ev = await bob.next((m) => m.type === 'kick');
  assert.equal(ev.reason, 'spam');
  // Not shown: the offline presence that follows (rule 76): alice sees nothing more of carol
  // before her own next line. Current is general again for carol.
  alice.send('after the kick');
  const { before: shown } = await alice.until(`[#${room}] ${aliceName}: after the kick`);
  assert.deepEqual(shown, [], 'lines after the kick line');
  carol.send('back in general');
  assert.equal(await carol.nextLine(/back in general/), `[#general] ${carolName}: back in general`);
  alice.send(`/kick ${carolName}`);
  assert.equal(await alice.nextLine(/kicked/), `* ${carolName} was kicked from #${room} by ${aliceName}`);
  // Out of the room already: this kick tells carol nothing.
  carol.send('marker');
  const { before: earlier } = await carol.until(`[#general] ${carolName}: marker`);
  assert.deepEqual(earlier.filter((l) => l.includes('kicked')), []);
});

test('/ban with MINUTES and REASON, /unban: exact lines; a banned /join is refused; MINUTES checked', async (t) => {
  const { alice, aliceName, bob, carol, carolName, room } = await setup(t);
  alice.send(`/ban ${carolName} 60 spam and more`);
  const line = `* ${carolName} was banned from #${room} by ${aliceName} for 60 min (spam and more)`;
  assert.equal(await alice.nextLine(/banned/), line);
  assert.equal(await carol.nextLine(/banned/), `* You were banned from #${room} by ${aliceName} for 60 min (spam and more)`);
  const ev = await bob.next((m) => m.type === 'ban');
  assert.deepEqual({ duration: ev.duration, reason: ev.reason }, { duration: 3600, reason: 'spam and more' });
  carol.send(`/join ${room}`);
  assert.equal(await carol.nextLine(/^!/), `! banned: banned from #${room}`);
  alice.send(`/unban ${carolName}`);
  assert.equal(await alice.nextLine(/unbanned/), `* ${carolName} was unbanned from #${room} by ${aliceName}`);
  // A second word that is not digits starts the reason; no reason, no duration: the bare line.
  alice.send(`/ban ${carolName} flooding it`);
  assert.equal(await alice.nextLine(/banned/), `* ${carolName} was banned from #${room} by ${aliceName} (flooding it)`);
  alice.send(`/ban ${carolName}`);
  assert.equal(await alice.nextLine(/banned/), `* ${carolName} was banned from #${room} by ${aliceName}`);
  // A WebSocket ban of 90 s shows as 2 min (rounded up).
  await bob.join(room);
  const adm = await adminClient(server, t);
  await adm.join(room);
  await adm.expect({ type: 'ban', room, user: 'someone', duration: 90 }, 'ack');
  assert.equal(await alice.nextLine(/someone/), `* someone was banned from #${room} by ${adm.name} for 2 min`);
  for (const bad of ['0', '525601', '9999999'])
    alice.send(`/ban ${carolName} ${bad}`), assert.match(await alice.nextLine(/^!/), /^! bad_request: /);
});

test('/mute USER [MINUTES], /unmute: exact lines; a non-digit MINUTES is bad_request; the muted get ! muted', async (t) => {
  const { alice, aliceName, carol, carolName, room } = await setup(t);
  alice.send(`/mute ${carolName} 10`);
  const line = `* ${carolName} was muted in #${room} by ${aliceName} for 10 min`;
  assert.equal(await alice.nextLine(/muted/), line);
  assert.equal(await carol.nextLine(/muted/), line);
  carol.send('can I talk?');
  assert.equal(await carol.nextLine(/^!/), `! muted: muted in #${room}`);
  alice.send(`/mute ${carolName} ten`);
  assert.match(await alice.nextLine(/^!/), /^! bad_request: /);
  alice.send(`/unmute ${carolName}`);
  assert.equal(await carol.nextLine(/unmuted/), `* ${carolName} was unmuted in #${room} by ${aliceName}`);
  alice.send(`/mute ${carolName}`);
  assert.equal(await carol.nextLine(/muted/), `* ${carolName} was muted in #${room} by ${aliceName}`);
});

test('a delete by someone else: "* alice deleted carol\'s message in #room"', async (t) => {
  const { alice, aliceName, carol, carolName, room } = await setup(t);
  carol.send('delete me');
  await alice.nextLine(`[#${room}] ${carolName}: delete me`);
  const aliceWs = await (await import('./lib/chat.mjs')).connect(server, t);
  await aliceWs.login(aliceName, PASSWORD);
  await aliceWs.join(room);
  const h = await aliceWs.expect({ type: 'history', room }, 'history');
  const seq = h.messages.at(-1).seq;
  await aliceWs.expect({ type: 'delete', room, seq }, 'ack');
  assert.equal(await carol.nextLine(/deleted/), `* ${aliceName} deleted ${carolName}'s message in #${room}`);
});
