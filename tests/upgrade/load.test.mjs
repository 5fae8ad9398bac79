// Drain mode (live mode's load test is live_load.test.mjs): three upgrades in a row (each once the previous one has handed over and its old process has
// exited) under load: 96 WebSocket users and 24 telnet users in four rooms send continuously,
// the WebSocket ones with cids, while a client connects in a tight loop. Nothing is refused;
// every acked message is stored exactly once; every WebSocket user, resuming with since after its
// 1012, ends up with every message of its rooms exactly once and in seq order; every telnet line
// that was echoed is stored once; each old process exits within its drain time and a margin; the
// generation counts the processes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ms, uniqRoom } from '../chat/lib/chat.mjs';
import { EXIT_MARGIN, Lineage, Rider, TelnetRider, assertRun, gone, roomHistory, tightConnector } from './lib/upgrade.mjs';

const WS_USERS = 96;
const TELNET_USERS = 24;
const UPGRADES = 3;
const DRAIN_S = 2;

test(`drain mode, ${UPGRADES} upgrades under load: nothing refused, lost, doubled or reordered`, { timeout: ms(240000) }, async (t) => {
  const lineage = await Lineage.start(t, [
    '--upgrade-mode', 'drain', '--drain-time', String(DRAIN_S), '--rate-limit', '0', '--max-conns-per-ip', '0', '--output-limit', String(64 << 20),
  ]);
  const rooms = [uniqRoom('la'), uniqRoom('lb'), uniqRoom('lc'), uniqRoom('ld')];
  const tag = `${process.pid % 1000}`;
  const riders = [];
  for (let i = 0; i < WS_USERS; i++) {
    // Each user in two rooms: fan-out across workers, and resumes of several rooms at once.
    const mine = [rooms[i % 4], rooms[(i + 1) % 4]];
    riders.push(new Rider(lineage, `w${tag}_${i}`, mine));
  }
  const typists = [];
  for (let i = 0; i < TELNET_USERS; i++) typists.push(new TelnetRider(lineage, `t${tag}_${i}`, rooms[i % 4]));
  for (let i = 0; i < riders.length; i += 16) await Promise.all(riders.slice(i, i + 16).map((r) => r.connect()));
  await Promise.all(typists.map((tr) => tr.connect()));
  const connector = tightConnector(lineage.server.telnetPort, lineage.server.httpPort);
  for (const r of riders) r.run(150);
  for (const tr of typists) tr.run(250);

  const generations = [1];
  for (let u = 0; u < UPGRADES; u++) {
    // Let traffic flow on this process first.
    const acked = riders.reduce((n, r) => n + r.acks.size, 0);
    while (riders.reduce((n, r) => n + r.acks.size, 0) < acked + 200) await new Promise((r) => setTimeout(r, 50));
    const { oldPid } = await lineage.upgrade();
    await gone(oldPid, ms(DRAIN_S * 1000) + EXIT_MARGIN, `old process ${oldPid} to exit within its drain time and margin`);
    generations.push((await lineage.healthz()).generation);
  }
  // Traffic on the last process too, then stop.
  const acked = riders.reduce((n, r) => n + r.acks.size, 0);
  while (riders.reduce((n, r) => n + r.acks.size, 0) < acked + 200) await new Promise((r) => setTimeout(r, 50));
  await connector.stop();
  await Promise.all(riders.map((r) => r.stop()));
  await Promise.all(typists.map((tr) => tr.stop()));

  assert.deepEqual(generations, [1, 2, 3, 4]);
  const h = await lineage.healthz();
  assert.equal(h.upgrades, UPGRADES);
  assert.equal(h.upgrades_failed, 0);
  assert.deepEqual(connector.failed, [], `connection attempts that failed (of ${connector.ok} that worked)`);
  assert.ok(connector.ok > 10, `the tight loop got through ${connector.ok} times`);
  for (const r of riders) assert.deepEqual(r.problems, [], `${r.name} got unexpected replies`);
  // Every WebSocket user was moved at least once (a 1012, or the close of a write on a process
  // that had handed over) and came back.
  assert.ok(riders.every((r) => r.reconnects >= 1), 'every WebSocket user reconnected');
  assert.ok(riders.some((r) => r.closes.includes(1012)), 'some were closed with 1012');

  let total = 0;
  for (const room of rooms) {
    const history = await roomHistory(lineage, room);
    const latest = history.length ? history.at(-1).seq : 0;
    assertRun(history.map((m) => m.seq), 0, latest, `the store's seqs of ${room}`);
    // Acked sends: stored once each, under their ack's seq.
    const byCid = new Map();
    const texts = new Set();
    for (const m of history) {
      assert.ok(!texts.has(`${m.from}/${m.text}`), `${m.text} stored twice`);
      texts.add(`${m.from}/${m.text}`);
      if (m.cid) byCid.set(`${m.from}/${m.cid}`, m.seq);
    }
    for (const r of riders) {
      for (const [cid, ack] of r.acks) {
        if (ack.room !== room) continue;
        assert.equal(byCid.get(`${r.name}/${cid}`), ack.seq, `acked ${cid} is not stored under seq ${ack.seq}`);
        total += 1;
      }
      if (r.rooms.includes(room)) assertRun(r.seen.get(room), r.start.get(room), latest, `${r.name}'s messages of ${room}`);
    }
    for (const tr of typists) {
      if (tr.room !== room) continue;
      for (const text of tr.echoed) assert.ok(texts.has(`${tr.name}/${text}`), `echoed line "${text}" is not stored`);
    }
  }
  assert.ok(total > 600, `only ${total} messages were acked`);
});
