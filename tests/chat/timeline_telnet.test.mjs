// Telnet and the timeline (protocol 1.1 rules 76, 77): the "(edited)" lines, the delete
// notices, /edit TEXT and /delete, /history in current states; reactions and replies unseen.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { dmRoom, openRoom, uniq, uniqRoom, user } from './lib/chat.mjs';
import { telnetLogin } from './lib/telnet.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
});

after(() => server?.dispose());

// A telnet guest and a WebSocket user, both in a fresh room that is the telnet user's current.
async function setup(t) {
  const name = uniq('t');
  const tn = await telnetLogin(server, t, name);
  const room = await openRoom(server, t);
  tn.send(`/join ${room}`);
  await tn.nextLine(`* You joined #${room} (1 online).`);
  const ws = await user(server, t);
  await ws.join(room);
  return { tn, ws, room, name };
}

// The message lines and delete notices that arrive before a marker sent now by ws into room
// (prompts and join notices aside).
async function linesBefore(tn, ws, room, all = false) {
  const text = `marker ${uniq('m')}`;
  await ws.say(room, text);
  const { before } = await tn.until(`[#${room}] ${ws.name}: ${text}`);
  return all ? before : before.filter((l) => l.startsWith('[') || l.includes(' deleted '));
}

test('an edit shows as the "(edited)" line, a delete by its author as "* X deleted a message in #room"', async (t) => {
  const { tn, ws, room, name } = await setup(t);
  // A mention of the telnet user is a plain line: no mark, no bell (rule 76).
  const ack = await ws.say(room, `over to you @${name}`);
  assert.deepEqual((await ws.next((m) => m.type === 'message' && m.seq === ack.seq)).mentions, [name]);
  assert.equal(await tn.nextLine(/over to you/), `[#${room}] ${ws.name}: over to you @${name}`);
  assert.ok(!tn.rawBytes().includes(0x07), 'a bell was sent');
  await ws.say(room, 'deploy on Thursday?');
  await tn.nextLine(`[#${room}] ${ws.name}: deploy on Thursday?`);
  await ws.request({ type: 'edit', room, seq: 2, text: 'deploy the release\non Friday?' });
  assert.equal(await tn.nextLine(/\(edited\)/), `[#${room}] ${ws.name} (edited): deploy the release`);
  assert.equal(await tn.nextLine(/on Friday/), '  on Friday?');
  await ws.request({ type: 'react', room, seq: 2, emoji: '👍' });
  await ws.say(room, 'a reply', { reply_to: 2 });
  assert.equal(await tn.nextLine(/a reply/), `[#${room}] ${ws.name}: a reply`, 'a reply is a plain message line');
  await ws.request({ type: 'delete', room, seq: 2 });
  assert.equal(await tn.nextLine(/deleted/), `* ${ws.name} deleted a message in #${room}`);
  // No line for the reaction: of what came, only the greeting and the join notice are left.
  const rest = (await linesBefore(tn, ws, room, true)).filter((l) => !l.startsWith('Welcome to parley'));
  assert.deepEqual(rest, [`* ${ws.name} joined #${room}`]);
});

test('/edit TEXT and /delete act on the user\'s newest message in the current room that is not deleted', async (t) => {
  const { tn, ws, room, name } = await setup(t);
  tn.send('/edit nothing to edit');
  assert.match(await tn.nextLine(/^!/), /^! not_found: /);
  tn.send('/delete');
  assert.match(await tn.nextLine(/^!/), /^! not_found: /);
  tn.send('first');
  await tn.nextLine(`[#${room}] ${name}: first`);
  tn.send('second');
  await tn.nextLine(`[#${room}] ${name}: second`);
  tn.send('/edit second, fixed');
  assert.equal(await tn.nextLine(/edited/), `[#${room}] ${name} (edited): second, fixed`);
  const e = await ws.next((m) => m.type === 'edit' && m.room === room);
  assert.deepEqual([e.target, e.text, e.from], [2, 'second, fixed', name]);
  tn.send('/delete now');
  assert.match(await tn.nextLine(/^!/), /^! bad_request: /);
  tn.send('/delete');
  assert.equal(await tn.nextLine(/deleted/), `* ${name} deleted a message in #${room}`);
  assert.equal((await ws.next((m) => m.type === 'delete' && m.room === room)).target, 2);
  tn.send('/delete');
  assert.equal(await tn.nextLine(/deleted/), `* ${name} deleted a message in #${room}`);
  assert.equal((await ws.next((m) => m.type === 'delete' && m.room === room)).target, 1);
  tn.send('/delete');
  assert.match(await tn.nextLine(/^!/), /^! not_found: /);
});

test('dm rooms: "[dm] a -> b (edited): ..." and "* a deleted a message to b"', async (t) => {
  const name = uniq('t');
  const tn = await telnetLogin(server, t, name);
  const ws = await user(server, t);
  const room = dmRoom(ws.name, name);
  await ws.dm(name, 'see you at 5');
  assert.equal(await tn.nextLine(/^\[dm\]/), `[dm] ${ws.name} -> ${name}: see you at 5`);
  await ws.request({ type: 'edit', room, seq: 1, text: 'see you at five' });
  assert.equal(await tn.nextLine(/^\[dm\]/), `[dm] ${ws.name} -> ${name} (edited): see you at five`);
  await ws.request({ type: 'delete', room, seq: 1 });
  assert.equal(await tn.nextLine(/deleted/), `* ${ws.name} deleted a message to ${name}`);
});

test('/history shows current states: edited messages as "(edited)" lines, deleted ones skipped and not counted', async (t) => {
  const { tn, ws, room } = await setup(t);
  for (const text of ['one', 'two', 'three', 'four']) {
    await ws.say(room, text);
    await tn.nextLine(`[#${room}] ${ws.name}: ${text}`);
  }
  await ws.request({ type: 'edit', room, seq: 2, text: 'TWO' });
  await tn.nextLine(/edited/);
  await ws.request({ type: 'delete', room, seq: 3 });
  await tn.nextLine(/deleted/);
  tn.send('/history 3');
  const got = [];
  for (let i = 0; i < 3; i++) got.push(await tn.nextLine(/^\[#/));
  assert.deepEqual(got, [
    `[#${room}] ${ws.name}: one`,
    `[#${room}] ${ws.name} (edited): TWO`,
    `[#${room}] ${ws.name}: four`,
  ]);
  assert.deepEqual(await linesBefore(tn, ws, room), [], '/history 3 printed exactly 3 lines');
});
