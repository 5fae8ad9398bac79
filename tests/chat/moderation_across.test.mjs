// Where moderation meets saved rooms, search and the join order (protocol 1.1 rules 64, 67, 72,
// 75): a kick or ban forgets the room from the user's saved rooms (the read marker stays); a
// banned user's search skips the room, and naming it answers banned; a banned user whose saved
// rooms are full still hears banned first.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, uniq } from './lib/chat.mjs';
import { staffedRoom, startAdminServer } from './lib/mod.mjs';

let server;

before(async () => {
  server = await startAdminServer(['--rate-limit', '0', '--max-rooms', '3']);
});

after(() => server?.dispose());

// A fresh connection of a registered user: its welcome.
async function welcomeOf(t, name) {
  const c = await ChatClient.connect(server, { label: `${name} again` });
  t.after(() => c.terminate());
  return c.login(name, 'correct-horse-9');
}

for (const kind of ['kick', 'ban']) {
  test(`a ${kind} forgets the room from the user's saved rooms; the read marker stays (rules 64, 66, 67)`, async (t) => {
    const { owner, member, room } = await staffedRoom(server, t);
    const said = await owner.say(room, 'before');
    await member.expect({ type: 'read', room, seq: said.seq }, 'read');
    let w = await welcomeOf(t, member.name);
    assert.ok(w.rooms.some((r) => r.name === room), `saved before the ${kind}: ${JSON.stringify(w.rooms)}`);
    await owner.expect({ type: kind, room, user: member.name }, 'ack');
    await member.next((m) => m.type === 'kicked' && m.room === room);
    w = await welcomeOf(t, member.name);
    assert.ok(!w.rooms.some((r) => r.name === room), `forgotten after the ${kind}: ${JSON.stringify(w.rooms)}`);
    if (kind === 'kick') {
      // Rejoining saves it again, and the marker it had is still there.
      const j = await member.join(room);
      assert.equal(j.read, said.seq);
    }
  });
}

test('search: a banned user\'s search skips the room; naming it answers banned (rules 64, 72)', async (t) => {
  const { owner, member, room } = await staffedRoom(server, t);
  const word = uniq('w').replace(/[^a-z0-9]/gi, '');
  await owner.say(room, `find ${word} here`);
  const found = await member.expect({ type: 'search', q: word }, 'search');
  assert.equal(found.results.length, 1);
  await owner.expect({ type: 'ban', room, user: member.name }, 'ack');
  await member.next((m) => m.type === 'kicked' && m.room === room);
  const none = await member.expect({ type: 'search', q: word }, 'search');
  assert.deepEqual(none.results, []);
  await member.expectError({ type: 'search', q: word, room }, 'banned');
  // Others still find it; after unban, so does the member.
  assert.equal((await owner.expect({ type: 'search', q: word, room }, 'search')).results.length, 1);
  await owner.expect({ type: 'unban', room, user: member.name }, 'ack');
  assert.equal((await member.expect({ type: 'search', q: word }, 'search')).results.length, 1);
});

test('join order (rule 75): banned comes before the saved-room limit', async (t) => {
  const { owner, member, room } = await staffedRoom(server, t);
  await owner.expect({ type: 'ban', room, user: member.name }, 'ack');
  await member.next((m) => m.type === 'kicked' && m.room === room);
  // Fill the member's saved rooms (--max-rooms 3) from another connection, then leave them
  // there: they stay saved.
  const other = await ChatClient.connect(server, { label: 'filler' });
  t.after(() => other.terminate());
  await other.login(member.name, 'correct-horse-9');
  for (let i = 0; i < 3; i++) {
    const r = uniq('fill');
    await owner.join(r);
    await other.join(r);
    await owner.leave(r); // the owner keeps room for the next one (--max-rooms 3)
  }
  const fresh = await ChatClient.connect(server, { label: 'fresh' });
  t.after(() => fresh.terminate());
  await fresh.login(member.name, 'correct-horse-9');
  await fresh.expectError({ type: 'join', room }, 'banned');
  await fresh.expectError({ type: 'join', room: uniq('more') }, 'too_many_rooms');
});
