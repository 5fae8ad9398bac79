// Upgrades one at a time, most of them in drain mode (live mode has its own suites): SIGUSR2 (and `parley upgrade --data DIR`) starts the
// same binary, which takes the listening sockets and the store; the old process closes its
// connections with 1012 (telnet: a notice) spread over --drain-time and exits; the generation and
// the counters go on in the new process; a second SIGUSR2 during an upgrade is ignored; TLS
// connections get their goodbye through TLS.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ChatClient, eventually, guest, ms, uniq, uniqRoom } from '../chat/lib/chat.mjs';
import { scrape, sum } from '../chat/lib/metrics.mjs';
import { TelnetClient, telnetLogin } from '../chat/lib/telnet.mjs';
import { freshDataDir, runParley } from '../blackbox/lib/server.mjs';
import { certDir, makeCert } from '../blackbox/lib/tls.mjs';
import { EXIT_MARGIN, HANDOVER_TIMEOUT, Lineage, gone, parleyBin } from './lib/upgrade.mjs';

const DRAIN_S = 2;

test('drain mode, SIGUSR2: the same binary takes over; clients get 1012 or a notice; generation and counters go on', async (t) => {
  const lineage = await Lineage.start(t, ['--upgrade-mode', 'drain', '--drain-time', String(DRAIN_S)]);
  const room = uniqRoom('up');
  const ws = await guest(lineage.server, t);
  await ws.join(room);
  const before = await ws.say(room, 'said before the upgrade', { cid: 'before-1' });
  const tn = await telnetLogin(lineage.server, t, uniq('tn'));
  const first = await lineage.healthz();
  assert.equal(first.generation, 1);
  assert.equal(first.upgrades, 0);
  assert.equal(first.pid, lineage.current);
  assert.equal(Number(readFileSync(`${lineage.dataDir}/parley.pid`, 'utf8')), lineage.current);

  const { oldPid, newPid } = await lineage.upgrade();
  // The new process refuses to upgrade while the old one still drains: one upgrade at a time.
  lineage.signal('SIGUSR2', newPid);
  const ignored = await lineage.waitLog(newPid, 'upgrade_ignored');
  assert.match(ignored.fields.reason, /still draining/);

  const close = await ws.waitClosed(ms(DRAIN_S * 1000) + EXIT_MARGIN, 'the 1012 of the drain');
  assert.deepEqual(close, { code: 1012, reason: 'service restart' });
  await tn.nextLine(/^\* The server is restarting/, ms(DRAIN_S * 1000) + EXIT_MARGIN, 'the restart notice');
  await tn.waitClosed();
  await gone(oldPid, ms(DRAIN_S * 1000) + EXIT_MARGIN, 'the old process to exit after its drain');
  const order = lineage.lines(oldPid).map((l) => l.fields.msg).filter((m) => m.startsWith('upgrade_') || m === 'draining' || m === 'stopped');
  assert.deepEqual(order, ['upgrade_started', 'upgrade_ready', 'upgrade_go', 'upgrade_handed_over', 'draining', 'stopped']);
  assert.ok(lineage.lines(newPid).some((l) => l.fields.msg === 'listening' && l.fields.inherited === '2'), 'the new process adopted the sockets');

  const after = await lineage.healthz();
  assert.equal(after.pid, newPid);
  assert.equal(after.generation, 2);
  assert.equal(after.upgrades, 1);
  assert.equal(after.upgrades_failed, 0);
  assert.equal(after.handed_over, 0);
  const m = await scrape(lineage.server);
  assert.equal(sum(m, 'parley_generation'), 2);
  assert.equal(sum(m, 'parley_upgrades_total', { result: 'done' }), 1);
  assert.equal(sum(m, 'parley_upgrade_connections_handed_over_total'), 0);
  assert.equal(Number(readFileSync(`${lineage.dataDir}/parley.pid`, 'utf8')), newPid);

  // The WebSocket client resumes where it was; the retry of its message is acked once.
  const back = await ChatClient.connect(lineage.server);
  t.after(() => back.terminate());
  await back.loginToken(ws.token);
  await back.join(room, before.seq);
  const again = await back.say(room, 'said before the upgrade', { cid: 'before-1' });
  assert.equal(again.seq, before.seq, 'a retry of an acked cid is the same message');
  const next = await back.say(room, 'said after the upgrade', { cid: 'after-1' });
  assert.equal(next.seq, before.seq + 1, 'the new process numbers on from the store');
});

test('`parley upgrade --data DIR` asks the server of DIR to upgrade; without one it says so', async (t) => {
  const lineage = await Lineage.start(t, ['--drain-time', '0.5']);
  const result = await runParley(['upgrade', '--data', lineage.dataDir]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`pid ${lineage.current}`));
  const newPid = await lineage.childOf(lineage.current);
  await lineage.waitLog(lineage.current, 'upgrade_handed_over', { new_pid: newPid });
  await eventually(async () => (await lineage.healthz()).pid === newPid, HANDOVER_TIMEOUT, 'the new process to serve');

  const empty = freshDataDir();
  t.after(() => runParley(['--version'])); // nothing to clean in an empty dir but the dir
  const none = await runParley(['upgrade', '--data', empty]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no running parley serves/);
  const usage = await runParley(['upgrade']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--data DIR is required/);
});

test('a second SIGUSR2 during an upgrade is ignored and logged; the held upgrade fails and the server serves on', async (t) => {
  // PARLEY_TEST_HOLD=go: the old process holds after READY and never sends GO (a test hook).
  const lineage = await Lineage.start(t, ['--upgrade-timeout', '30'], { env: { PARLEY_TEST_HOLD: 'go' } });
  const room = uniqRoom('held');
  const a = await guest(lineage.server, t);
  await a.join(room);
  lineage.signal('SIGUSR2');
  const child = await lineage.childOf(lineage.current);
  await lineage.waitLog(lineage.current, 'upgrade_holding');
  // Writes wait while the store is held: this one is answered once the upgrade has failed.
  const pending = a.say(room, 'sent while the store is held', { cid: 'held-1' });
  lineage.signal('SIGUSR2');
  const ignored = await lineage.waitLog(lineage.current, 'upgrade_ignored');
  assert.match(ignored.fields.reason, /already under way/);
  process.kill(child, 'SIGKILL');
  const failed = await lineage.waitLog(lineage.current, 'upgrade_failed');
  assert.match(failed.fields.new_process, /killed by signal 9/);
  const ack = await pending;
  assert.equal(ack.type, 'ack');
  assert.ok(a.isOpen, 'the client never noticed');
  assert.equal((await a.say(room, 'and after')).seq, ack.seq + 1);
  const h = await lineage.healthz();
  assert.equal(h.pid, lineage.current);
  assert.equal(h.generation, 1);
  assert.equal(h.upgrades_failed, 1);
});

test('drain mode: the drain spreads its goodbyes over --drain-time', async (t) => {
  const lineage = await Lineage.start(t, ['--upgrade-mode', 'drain', '--drain-time', String(DRAIN_S)]);
  const clients = [];
  for (let i = 0; i < 12; i++) clients.push(await guest(lineage.server, t));
  const closedAt = clients.map((c) => c.closed.then(() => Date.now()));
  await lineage.upgrade();
  const times = await Promise.all(closedAt.map((p) => Promise.race([p, new Promise((r) => setTimeout(() => r(null), ms(DRAIN_S * 1000) + EXIT_MARGIN))])));
  assert.ok(times.every((x) => x !== null), 'every client was closed within the drain time and its margin');
  for (const c of clients) assert.equal(c.closeInfo.code, 1012);
  const span = Math.max(...times) - Math.min(...times);
  // 12 goodbyes over 2 s are 167 ms apart: all at once would take a few ms.
  assert.ok(span >= (DRAIN_S * 1000) / 2, `the goodbyes came within ${span} ms, not spread over ${DRAIN_S} s`);
});

test('TLS (live mode, the default): wss and TLS telnet clients are drained, their goodbye through TLS, and the TLS ports carry on', async (t) => {
  const dir = certDir();
  t.after(() => dir.remove());
  const cert = makeCert(dir.dir);
  const lineage = await Lineage.start(t, ['--drain-time', '0.5', '--telnet-tls', '127.0.0.1:0'], { tls: cert });
  const tlsPort = Number(lineage.server.listening.telnet_tls.split(':').pop());
  const ws = await guest(lineage.server, t);
  const tn = await TelnetClient.connectTls(tlsPort, cert.ca);
  t.after(() => tn.destroy());
  await tn.waitPrompt(/Your name\? $/);
  await tn.send(uniq('tls'));
  await tn.nextLine(/joined #general/);
  const { newPid } = await lineage.upgrade();
  assert.deepEqual(await ws.waitClosed(EXIT_MARGIN), { code: 1012, reason: 'service restart' });
  await tn.nextLine(/^\* The server is restarting/, EXIT_MARGIN);
  await tn.waitClosed();
  assert.ok(lineage.lines(newPid).some((l) => l.fields.transport === 'telnet_tls' && l.fields.inherited === '2'));
  // Both TLS ports serve from the new process.
  const again = await guest(lineage.server, t);
  await again.join('general');
  const tn2 = await TelnetClient.connectTls(tlsPort, cert.ca);
  t.after(() => tn2.destroy());
  await tn2.waitPrompt(/Your name\? $/);
  assert.equal((await lineage.healthz()).pid, newPid);
});

// The new binary may run more or fewer workers than the old one had sockets per port (here: a
// wrapper that adds --workers N to the same arguments). More: the extra workers add SO_REUSEPORT
// sockets of their own on the port; fewer: a worker takes several. Either way every socket is
// served and none is closed.
for (const workers of [3, 1]) {
  test(`the new process runs ${workers} worker(s) on the 2 sockets per port it was handed`, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-wrap-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const wrapper = path.join(dir, 'parley');
    writeFileSync(wrapper, `#!/bin/sh\nexec "${parleyBin}" "$@" --workers ${workers}\n`);
    chmodSync(wrapper, 0o755);
    const lineage = await Lineage.start(t, ['--workers', '2', '--drain-time', '0.5', '--upgrade-binary', wrapper]);
    const { oldPid, newPid } = await lineage.upgrade();
    const added = lineage.lines(newPid).filter((l) => l.fields.msg === 'listeners_added');
    if (workers === 3) assert.deepEqual(added.map((l) => [l.fields.sockets, l.fields.shared]), [['1', 'false'], ['1', 'false']]);
    else assert.deepEqual(added, []);
    await gone(oldPid, EXIT_MARGIN);
    // Many connections, so that every socket of the port (old and added) gets some: all served.
    const clients = [];
    for (let i = 0; i < 24; i++) clients.push(await guest(lineage.server, t));
    const tns = [];
    for (let i = 0; i < 12; i++) {
      const tc = await TelnetClient.connect(lineage.server);
      t.after(() => tc.destroy());
      await tc.waitPrompt(/Your name\? $/);
      tns.push(tc);
    }
    assert.equal((await lineage.healthz()).pid, newPid);
  });
}
