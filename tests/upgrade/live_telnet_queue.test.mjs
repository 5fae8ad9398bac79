// Live upgrades and telnet lines waiting for a rate-limit token (rule 79): the record (version 4)
// carries them, so they run in the new process, in order, exactly once, and a Ctrl-C there counts
// those still waiting. A binary writing an older record version cannot carry them: the connection
// is busy until they have run (live_faults and compat show what busy connections do).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ms, user, uniq } from '../chat/lib/chat.mjs';
import { IAC, telnetLogin } from '../chat/lib/telnet.mjs';
import { Lineage } from './lib/upgrade.mjs';

const msgLine = (room, from, text) => `[#${room}] ${from}: ${text}`;
// Lines that wait for a token come seconds later: a bound on the wait, not a timing assertion.
const TOKEN_WAIT = ms(20000);

test('live: telnet lines waiting for tokens move with the connection and run in the new process, in order, once', async (t) => {
  // 2 tokens, one more every 5 s: "w1" runs about 5 s after the burst, long after the handover.
  const lineage = await Lineage.start(t, ['--rate-limit', '2']);
  const { server } = lineage;
  const w = await user(server, t);
  await w.join('general');
  const name = uniq('tq');
  const tn = await telnetLogin(server, t, name);
  await tn.write('one\r\ntwo\r\nw1\r\nw2\r\nw3\r\n');
  await tn.nextLine(msgLine('general', name, 'two'));

  const { newPid } = await lineage.upgrade();
  const records = await lineage.waitLog(newPid, 'handover_records');
  assert.ok(Number(records.fields.versions) >= 4, `records of version ${records.fields.versions}`);

  // The first waiting line runs in the new process; then Ctrl-C finds the other two still there.
  await tn.nextLine(msgLine('general', name, 'w1'), TOKEN_WAIT);
  await tn.write(Buffer.from([IAC, 244]));
  assert.equal(await tn.nextLine(/^\* \d+ waiting/), '* 2 waiting lines dropped');
  assert.equal(tn.ended, false, 'the telnet connection is open');

  // Every line the user sent is stored exactly once, in order; none of those dropped.
  await w.say('general', 'marker');
  const h = await w.request({ type: 'history', room: 'general', limit: 20 });
  assert.deepEqual(
    h.messages.map((m) => m.text),
    ['one', 'two', 'w1', 'marker'],
  );
  assert.equal((await lineage.healthz()).pid, newPid);
});

test('live: a binary writing version 3 records keeps a telnet connection with waiting lines (busy); when it goes, the user is told what was dropped', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '1'], { env: { PARLEY_TEST_RECORD_VERSION: '3' } });
  const { server } = lineage;
  const w = await user(server, t);
  await w.join('general');
  const name = uniq('tq');
  const tn = await telnetLogin(server, t, name);
  // 1 token, one more every 10 s: "w1" and "w2" wait through the whole handover.
  await tn.write('one\r\nw1\r\nw2\r\n');
  await tn.nextLine(msgLine('general', name, 'one'));
  const oldPid = lineage.current;
  await lineage.upgrade();
  const busy = await lineage.waitLog(oldPid, 'handover_busy');
  assert.equal(busy.fields.connections, '1');
  await tn.waitClosed();
  const got = tn.pendingLines();
  assert.deepEqual(got.slice(-2), ['* 2 waiting lines dropped', '* The server is restarting: connect again to go on.'], JSON.stringify(got));
});
