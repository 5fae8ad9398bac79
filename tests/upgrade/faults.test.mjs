// Upgrades that go wrong: a new binary that exits at once, one that never gets ready, one that
// dies after READY but before GO; kill -9 of the new process before it is ready and after it has
// taken over (the old one restarts itself on the store as it is), and of the old process before
// GO (the new one takes over: nobody else writes) and after it (nothing to do). In every case no
// acked message is lost, only one process writes, and the clients that were cut off resume.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { guest, uniqRoom } from '../chat/lib/chat.mjs';
import { EXIT_MARGIN, HANDOVER_TIMEOUT, Lineage, Rider, alive, assertAckedStored, assertRun, gone, roomHistory } from './lib/upgrade.mjs';

// A "binary" that is a shell script: how a broken build looks from outside.
function script(t, body) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-bad-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'parley');
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

// A room with a client that sends in it, for checking afterwards that nothing acked was lost.
async function busyRoom(lineage, t) {
  const room = uniqRoom('f');
  const a = await guest(lineage.server, t);
  await a.join(room);
  return { room, a };
}

for (const [what, body, args, reason] of [
  ['exits at once', 'exit 3', [], /closed the control channel|exited/],
  ['hangs before it is ready', 'exec sleep 60', ['--upgrade-timeout', '1'], /not ready within 1.0 s/],
]) {
  test(`a new binary that ${what}: the upgrade fails and the old process serves on unnoticed`, async (t) => {
    const bad = script(t, body);
    const lineage = await Lineage.start(t, ['--upgrade-binary', bad, ...args]);
    const { room, a } = await busyRoom(lineage, t);
    const first = await a.say(room, 'before');
    lineage.signal('SIGUSR2');
    const child = await lineage.childOf(lineage.current);
    const failed = await lineage.waitLog(lineage.current, 'upgrade_failed');
    assert.match(failed.fields.reason, reason);
    assert.equal(failed.fields.action, 'this process serves on');
    await gone(child, EXIT_MARGIN);
    assert.ok(a.isOpen, 'the client never noticed');
    assert.equal((await a.say(room, 'after')).seq, first.seq + 1);
    const h = await lineage.healthz();
    assert.equal(h.pid, lineage.current);
    assert.equal(h.upgrades_failed, 1);
    assert.equal(h.generation, 1);
  });
}

test('a new process killed after READY, before GO: the old one opens its store again; writes held meanwhile are stored', async (t) => {
  // PARLEY_TEST_HOLD=go (a test hook): the old process holds after READY and never sends GO.
  const lineage = await Lineage.start(t, ['--upgrade-timeout', '30'], { env: { PARLEY_TEST_HOLD: 'go' } });
  const { room, a } = await busyRoom(lineage, t);
  const b = await guest(lineage.server, t);
  await b.join(room);
  const first = await a.say(room, 'before');
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(lineage.current);
  await lineage.waitLog(lineage.current, 'upgrade_holding');
  const held = a.say(room, 'held', { cid: 'held-1' });
  process.kill(child, 'SIGKILL');
  const failed = await lineage.waitLog(lineage.current, 'upgrade_failed');
  assert.equal(failed.fields.action, 'this process serves on');
  const ack = await held;
  assert.equal(ack.seq, first.seq + 1);
  const seen = await b.messages(room, 2);
  assert.deepEqual(seen.map((m) => m.text), ['before', 'held']);
  assert.ok(a.isOpen && b.isOpen, 'nobody noticed');
  // The server accepts again.
  const c = await guest(lineage.server, t);
  await c.join(room);
});

test('a new process killed before it is ready: the old one serves on', async (t) => {
  // PARLEY_TEST_HOLD=ready (a test hook): the new process never reports ready.
  const lineage = await Lineage.start(t, ['--upgrade-timeout', '30'], { env: { PARLEY_TEST_HOLD: 'ready' } });
  const { room, a } = await busyRoom(lineage, t);
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(lineage.current);
  await lineage.waitLog(child, 'upgrade_holding');
  process.kill(child, 'SIGKILL');
  const failed = await lineage.waitLog(lineage.current, 'upgrade_failed');
  assert.match(failed.fields.new_process, /killed by signal 9/);
  assert.ok(a.isOpen);
  await a.say(room, 'still here');
});

test('drain mode: the new process killed after taking over, while the old one drains: the old restarts itself on the store, nothing acked is lost', async (t) => {
  const lineage = await Lineage.start(t, ['--upgrade-mode', 'drain', '--drain-time', '30', '--rate-limit', '0']);
  const room = uniqRoom('k');
  const riders = [];
  for (let i = 0; i < 6; i++) {
    const r = new Rider(lineage, `kr${i}_${process.pid}`, [room]);
    await r.connect();
    riders.push(r);
  }
  // Idle clients keep the old process draining (30 s); the riders, which write, are sent to the
  // new one at their first write (a handed-over process closes a writer with 1012 at once).
  for (let i = 0; i < 8; i++) await guest(lineage.server, t);
  for (const r of riders) r.run(50);
  const { oldPid, newPid } = await lineage.upgrade();
  // Riders cut off by the drain resume on the new process and send there: wait for one ack there.
  await lineage.waitLog(oldPid, 'draining');
  const acked = riders.reduce((n, r) => n + r.acks.size, 0);
  const more = async () => riders.reduce((n, r) => n + r.acks.size, 0) > acked + 20;
  const deadline = Date.now() + HANDOVER_TIMEOUT;
  while (!(await more()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  process.kill(newPid, 'SIGKILL');
  const failed = await lineage.waitLog(oldPid, 'upgrade_failed');
  assert.match(failed.fields.reason, /died while this one was draining|exited/);
  assert.equal(failed.fields.action, 'this process restarts itself on the store as it is');
  // The old process's pid now runs a fresh copy of the binary, on the same sockets.
  await lineage.waitLog(oldPid, 'ready', { generation: 3 });
  lineage.current = oldPid;
  assert.ok(!alive(newPid));
  const h = await lineage.healthz();
  assert.equal(h.pid, oldPid);
  assert.equal(h.generation, 3);
  assert.equal(h.upgrades_failed, 1);
  // Every rider carries on; then nothing acked is missing and each saw its room exactly once.
  await Promise.all(riders.map((r) => r.stop()));
  const n = await assertAckedStored(lineage, riders, room);
  assert.ok(n > 20);
  const history = await roomHistory(lineage, room);
  const latest = history.at(-1).seq;
  for (const r of riders) assertRun(r.seen.get(room), r.start.get(room), latest, `${r.name}'s messages of ${room}`);
});

test('the old process killed before GO: the new one takes over, since nobody else writes', async (t) => {
  const lineage = await Lineage.start(t, ['--upgrade-timeout', '30', '--rate-limit', '0'], { env: { PARLEY_TEST_HOLD: 'go' } });
  const room = uniqRoom('o');
  const r = new Rider(lineage, `or_${process.pid}`, [room]);
  await r.connect();
  const first = await r.sendOnce(room, 'before', 'o-1');
  lineage.signal('SIGUSR2');
  const oldPid = lineage.current;
  const child = await lineage.childOf(oldPid);
  await lineage.waitLog(oldPid, 'upgrade_holding');
  const held = r.sendOnce(room, 'held when the old one died', 'o-2');
  process.kill(oldPid, 'SIGKILL');
  await lineage.waitLog(child, 'upgrade_took_over');
  await lineage.waitLog(child, 'ready');
  lineage.current = child;
  // The send that waited in the dead process's store was never acked there: the rider sends it
  // again with its cid on the new process, and it is stored once.
  const ack = await held;
  assert.equal(ack.seq, first.seq + 1);
  await r.stop();
  await assertAckedStored(lineage, [r], room);
  const h = await lineage.healthz();
  assert.equal(h.pid, child);
  assert.equal(h.generation, 2);
});

test('drain mode: the old process killed after GO: the new one serves on', async (t) => {
  const lineage = await Lineage.start(t, ['--upgrade-mode', 'drain', '--drain-time', '30', '--rate-limit', '0']);
  const room = uniqRoom('a');
  const r = new Rider(lineage, `ar_${process.pid}`, [room]);
  await r.connect();
  for (let i = 0; i < 8; i++) await guest(lineage.server, t); // keep the old one draining
  r.run(20);
  const { oldPid, newPid } = await lineage.upgrade();
  await lineage.waitLog(oldPid, 'draining');
  process.kill(oldPid, 'SIGKILL');
  await lineage.waitLog(newPid, 'predecessor_gone');
  await gone(oldPid, EXIT_MARGIN);
  await r.stop();
  await assertAckedStored(lineage, [r], room);
  const history = await roomHistory(lineage, room);
  assertRun(r.seen.get(room), r.start.get(room), history.at(-1).seq, 'the rider saw every message once');
  assert.equal((await lineage.healthz()).pid, newPid);
  // And it can upgrade again, its predecessor being gone.
  await lineage.upgrade();
  assert.ok(alive(lineage.current));
});

