// Gathered waves (docs/architecture.md, "Posts leave at the end of a turn"): while the store has
// writes coming, the hub holds a commit's deliveries for the next commit's answers. Rounds in
// which every member sends at once (--workers 2) make it hold; whatever it held arrives whole,
// in seq order, with every ack; and a lone message afterwards still arrives.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { LONG_TIMEOUT, assertSeqRun, guest, openRoom } from './lib/chat.mjs';
import { scrape, sum } from './lib/metrics.mjs';

let server;

before(async () => {
  server = await startChatServer(['--workers', '2', '--rate-limit', '0']);
});

after(() => server?.dispose());

const MEMBERS = 24;
const MAX_ROUNDS = 60;

test('rounds of sends from every member: held waves arrive whole, in order, with their acks', async (t) => {
  const room = await openRoom(server, t);
  const members = [];
  for (let i = 0; i < MEMBERS; i++) {
    const c = await guest(server, t);
    await c.join(room);
    members.push(c);
  }
  // Joins seen by the members who came first are not what this test reads.
  for (const c of members) c.ignore = (m) => !['message', 'ack', 'error'].includes(m.type);
  const waited = async () => sum(await scrape(server), 'parley_waves_waited_total');
  const before0 = await waited();
  let seq = 0;
  let rounds = 0;
  // Rounds go on until the hub has held a wave at least once (almost always the first rounds:
  // 24 sends arrive over both workers while the first ones commit), at most MAX_ROUNDS.
  while (rounds < MAX_ROUNDS && (rounds < 3 || (await waited()) === before0)) {
    rounds++;
    const acks = await Promise.all(members.map((c, i) => c.say(room, `r${rounds} m${i}`, { cid: `r${rounds}-${i}` })));
    const seqs = acks.map((a) => a.seq).sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: MEMBERS }, (_, i) => seq + i + 1), `round ${rounds}: acks`);
    const views = await Promise.all(members.map((c) => c.messages(room, MEMBERS, LONG_TIMEOUT)));
    for (const [i, view] of views.entries()) assertSeqRun(view, room, seq + 1, seq + MEMBERS, `round ${rounds}, member ${i}`);
    for (const view of views.slice(1)) assert.deepEqual(view, views[0], `round ${rounds}: members saw different messages`);
    for (const [i, ack] of acks.entries()) assert.equal(views[0][ack.seq - seq - 1].cid, `r${rounds}-${i}`);
    seq += MEMBERS;
  }
  assert.ok((await waited()) > before0, `no wave waited for a commit in ${rounds} rounds of ${MEMBERS} sends`);
  // A lone message, nothing else coming: it is delivered to everyone, and the hub did not hold
  // it (a held wave is counted before it leaves, so the count is final once all have it).
  const heldBefore = await waited();
  const ack = await members[0].say(room, 'lone');
  assert.equal(ack.seq, seq + 1);
  for (const c of members) {
    const [m] = await c.messages(room, 1);
    assert.equal(m.text, 'lone');
    assert.equal(m.seq, seq + 1);
  }
  assert.equal(await waited(), heldBefore, 'the hub held the lone message');
});
