// Live upgrades that go wrong in the middle of the handover, with clients sending all along (with
// cids, resuming with since when they are cut off):
// - a new binary that crashes after adopting some batches (PARLEY_TEST_HOLD=crash:K): the old
//   process restarts itself with every connection, none of them closed;
// - records the new binary refuses (the version after its own, PARLEY_TEST_RECORD_VERSION): the
//   old process keeps those connections and drains them with 1012; they resume;
// - kill -9 of either process in the middle of the handover (PARLEY_TEST_HOLD=moving: the old one
//   stops after its first batch) and after it (PARLEY_TEST_HOLD=serving: the new one never says it
//   serves): the connections not yet moved stay with a process that serves them, those that were
//   cut off resume.
// In every case no acked message is lost or stored twice, and each client sees every message of
// its room exactly once, in order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uniqRoom } from '../chat/lib/chat.mjs';
import { HANDOVER_TIMEOUT, Lineage, Rider, TelnetRider, alive, assertAckedStored, assertRun, gone, roomHistory } from './lib/upgrade.mjs';

const RIDERS = 8;

// A line with riders sending in one room (and two telnet users): returns {lineage, room, riders,
// typists}. env: the test hooks of the first process (every process of the line inherits them).
async function busyLine(t, env, args = []) {
  const lineage = await Lineage.start(t, ['--rate-limit', '0', '--drain-time', '1', ...args], { env });
  const room = uniqRoom('lf');
  const riders = [];
  for (let i = 0; i < RIDERS; i++) {
    const r = new Rider(lineage, `lf${i}_${process.pid % 1000}`, [room]);
    await r.connect();
    riders.push(r);
  }
  const typists = [];
  for (let i = 0; i < 2; i++) {
    const tr = new TelnetRider(lineage, `lt${i}_${process.pid % 1000}`, room);
    await tr.connect();
    typists.push(tr);
  }
  for (const r of riders) r.run(30);
  for (const tr of typists) tr.run(60);
  await acksGrow(riders, 20);
  return { lineage, room, riders, typists };
}

// Waits until the riders have been acked `more` more sends.
async function acksGrow(riders, more) {
  const total = () => riders.reduce((n, r) => n + r.acks.size, 0);
  const want = total() + more;
  const deadline = Date.now() + HANDOVER_TIMEOUT;
  while (total() < want) {
    if (Date.now() > deadline) throw new Error(`the riders were acked ${total()} sends, not ${want}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Stops everyone, then checks the store and what each rider saw.
async function settle(lineage, room, riders, typists) {
  await acksGrow(riders, 20);
  await Promise.all(riders.map((r) => r.stop()));
  await Promise.all(typists.map((tr) => tr.stop()));
  for (const r of riders) assert.deepEqual(r.problems, [], `${r.name} got unexpected replies`);
  const acked = await assertAckedStored(lineage, riders, room);
  assert.ok(acked > 40, `only ${acked} sends were acked`);
  const history = await roomHistory(lineage, room);
  const latest = history.at(-1).seq;
  for (const r of riders) assertRun(r.seen.get(room), r.start.get(room), latest, `${r.name}'s messages`);
  const texts = new Set(history.map((m) => `${m.from}/${m.text}`));
  for (const tr of typists) for (const text of tr.echoed) assert.ok(texts.has(`${tr.name}/${text}`), `echoed "${text}" is not stored`);
}

const reconnected = (riders, typists) => [...riders, ...typists].filter((r) => r.reconnects > 0).map((r) => r.name);

test('live: a new binary that crashes after adopting two batches: the old process restarts itself with every connection, none is closed', async (t) => {
  const { lineage, room, riders, typists } = await busyLine(t, { PARLEY_TEST_BATCH: '2', PARLEY_TEST_HOLD: 'crash:2' });
  const oldPid = lineage.current;
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(oldPid);
  const failed = await lineage.waitLog(oldPid, 'upgrade_failed');
  assert.match(failed.fields.new_process, /killed by signal 9/);
  assert.equal(failed.fields.action, 'this process restarts itself on the store as it is');
  const restart = await lineage.waitLog(oldPid, 'restarting');
  assert.equal(restart.fields.connections, String(RIDERS + 2));
  // The same pid runs a fresh image that adopted every connection.
  const adopted = await lineage.waitLog(oldPid, 'handover_adopted');
  assert.equal(adopted.fields.connections, String(RIDERS + 2));
  assert.equal(adopted.fields.refused, '0');
  await lineage.waitLog(oldPid, 'ready', { generation: 3 });
  assert.ok(lineage.lines(child).some((l) => l.fields.msg === 'handover_refused') === false);
  assert.ok(!alive(child));
  await settle(lineage, room, riders, typists);
  assert.deepEqual(reconnected(riders, typists), [], 'nobody was cut off');
  for (const r of riders) assert.deepEqual(r.closes, [], `${r.name} saw a close`);
  const h = await lineage.healthz();
  assert.equal(h.pid, oldPid);
  assert.equal(h.generation, 3);
  assert.equal(h.upgrades_failed, 1);
  assert.equal(h.handed_over, RIDERS + 2);
});

test('live: records of a version the new binary does not read stay with the old process, are drained with 1012, and resume', async (t) => {
  // Records of the version after this binary's: as from a newer binary, in a rollback.
  const { lineage, room, riders, typists } = await busyLine(t, { PARLEY_TEST_RECORD_VERSION: 'next' });
  const { oldPid, newPid } = await lineage.upgrade();
  const refused = lineage.lines(oldPid).filter((l) => l.fields.msg === 'handover_refused');
  assert.ok(refused.length > 0);
  assert.match(refused[0].fields.why, /a record version this binary does not read/);
  assert.equal(refused.reduce((n, l) => n + Number(l.fields.conns), 0), RIDERS + 2);
  await gone(oldPid, HANDOVER_TIMEOUT, 'the old process to exit after its drain');
  await settle(lineage, room, riders, typists);
  assert.ok(riders.every((r) => r.closes.includes(1012)), 'every WebSocket rider got 1012');
  assert.ok(typists.every((tr) => tr.reconnects > 0), 'every telnet user came back');
  const h = await lineage.healthz();
  assert.equal(h.pid, newPid);
  assert.equal(h.handed_over, 0);
  assert.equal(h.drained, RIDERS + 2);
});

test('live: kill -9 of the new process in the middle of the handover: the old one restarts itself with every connection, none is closed', async (t) => {
  const { lineage, room, riders, typists } = await busyLine(t, { PARLEY_TEST_BATCH: '2', PARLEY_TEST_HOLD: 'moving' });
  const oldPid = lineage.current;
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(oldPid);
  await lineage.waitLog(oldPid, 'upgrade_holding', { test_hook: 'PARLEY_TEST_HOLD=moving' });
  process.kill(child, 'SIGKILL');
  await lineage.waitLog(oldPid, 'handover_adopted');
  await lineage.waitLog(oldPid, 'ready', { generation: 3 });
  await settle(lineage, room, riders, typists);
  assert.deepEqual(reconnected(riders, typists), [], 'nobody was cut off');
  assert.equal((await lineage.healthz()).pid, oldPid);
});

test('live: kill -9 of the old process in the middle of the handover: the new one serves what it adopted; the others resume', async (t) => {
  const { lineage, room, riders, typists } = await busyLine(t, { PARLEY_TEST_BATCH: '2', PARLEY_TEST_HOLD: 'moving' });
  const oldPid = lineage.current;
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(oldPid);
  await lineage.waitLog(oldPid, 'upgrade_holding', { test_hook: 'PARLEY_TEST_HOLD=moving' });
  // The one batch sent (of at most 2: its records were written together on one worker).
  const sent = Number((await lineage.waitLog(oldPid, 'handover_batch_sent', { batch: 1 })).fields.conns);
  assert.ok(sent >= 1 && sent <= 2);
  process.kill(oldPid, 'SIGKILL');
  const adopted = await lineage.waitLog(child, 'handover_adopted');
  assert.equal(adopted.fields.connections, String(sent), 'the one batch it was sent');
  await lineage.waitLog(child, 'ready');
  lineage.current = child;
  await settle(lineage, room, riders, typists);
  const cut = reconnected(riders, typists);
  assert.equal(cut.length, RIDERS + 2 - sent, `the connections not sent were cut off and came back: ${cut}`);
  assert.equal((await lineage.healthz()).pid, child);
});

test('live: kill -9 of the new process after the handover, before it says it serves: the old one restarts itself; the moved clients resume', async (t) => {
  const { lineage, room, riders, typists } = await busyLine(t, { PARLEY_TEST_HOLD: 'serving' });
  const oldPid = lineage.current;
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(oldPid);
  await lineage.waitLog(child, 'upgrade_holding', { test_hook: 'PARLEY_TEST_HOLD=serving' });
  await acksGrow(riders, 10); // traffic on the new process
  process.kill(child, 'SIGKILL');
  await lineage.waitLog(oldPid, 'upgrade_failed');
  await lineage.waitLog(oldPid, 'ready', { generation: 3 });
  await settle(lineage, room, riders, typists);
  assert.equal((await lineage.healthz()).pid, oldPid);
});

test('live: kill -9 of the old process after the handover, before the new one says it serves: the new one serves on, nobody is cut off', async (t) => {
  const { lineage, room, riders, typists } = await busyLine(t, { PARLEY_TEST_HOLD: 'serving' });
  const oldPid = lineage.current;
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(oldPid);
  await lineage.waitLog(child, 'upgrade_holding', { test_hook: 'PARLEY_TEST_HOLD=serving' });
  process.kill(oldPid, 'SIGKILL');
  await lineage.waitLog(child, 'predecessor_gone');
  lineage.current = child;
  await settle(lineage, room, riders, typists);
  assert.deepEqual(reconnected(riders, typists), [], 'nobody was cut off');
  assert.equal((await lineage.healthz()).pid, child);
});
