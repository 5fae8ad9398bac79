// Helpers for the topic, roles and moderation suites (protocol 1.1 rules 58-65): a server with
// a registered admin, and a room with an owner, an op, a member and a guest in it.
import assert from 'node:assert/strict';
import { ChatClient, guest, uniq, uniqRoom, user } from './chat.mjs';
import { startChatServer } from './server.mjs';

// Starts a server, registers `admin` on it, and starts it again on the same data with
// `--admin ADMIN` (upper-cased: the option is case-insensitive) and extraArgs: --admin must
// name a registered account when the server starts (rule 59).
export async function startAdminServer(extraArgs = [], admin = uniq('root')) {
  const first = await startChatServer(['--rate-limit', '0']);
  try {
    const c = await ChatClient.connect(first, { label: 'admin registration' });
    await c.register(admin);
    c.terminate();
  } finally {
    await first.kill();
  }
  const server = await first.restart(['--admin', admin.toUpperCase(), ...extraArgs]);
  server.admin = admin;
  return server;
}

// A logged-in connection of the server's admin.
export async function adminClient(server, t) {
  const c = await ChatClient.connect(server, { label: `admin ${server.admin}` });
  t?.after(() => c.terminate());
  await c.login(server.admin, 'correct-horse-9');
  return c;
}

// The next event of `type` in `room` at c.
export const nextEvent = (c, room, type, pred = () => true) =>
  c.next((m) => m.type === type && m.room === room && pred(m), undefined, `a ${type} event in ${room}`);

// A fresh room created by its owner (registered), with an op (made by the owner), a registered
// member and a guest in it; every event of the setup taken from every inbox.
export async function staffedRoom(server, t) {
  const owner = await user(server, t);
  const op = await user(server, t);
  const member = await user(server, t);
  const g = await guest(server, t);
  const room = uniqRoom();
  const joined = await owner.join(room);
  assert.equal(joined.role, 'owner');
  for (const c of [op, member, g]) await c.join(room);
  const ack = await owner.expect({ type: 'role', room, user: op.name, role: 'op' }, 'ack');
  for (const c of [owner, op, member, g]) await nextEvent(c, room, 'role', (m) => m.seq === ack.seq);
  return { owner, op, member, guest: g, room, seq: ack.seq };
}

// Shows that no event of room with a seq reached c before a marker message sent now by `by`.
export async function assertNothingBefore(c, by, room) {
  const text = `marker ${uniq('m')}`;
  await by.say(room, text);
  const { before: earlier } = await c.until((m) => m.type === 'message' && m.text === text);
  const events = earlier.filter((m) => m.room === room && (m.seq !== undefined || m.type === 'kicked'));
  assert.deepEqual(events, [], `events arrived before the marker: ${JSON.stringify(events)}`);
}
