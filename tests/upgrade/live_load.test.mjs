// The live upgrade under load (issue 8's test): CLIENTS clients, WebSocket and telnet mixed (one
// in five on telnet), in 20 rooms, each sending continuously (WebSocket with cids), while the
// server is upgraded UPGRADES times in a row, and a client connects in a tight loop. Before each
// upgrade half the clients cut their next message in two (a WebSocket frame, a telnet line) and
// send the second half only once the old process has handed over. Then: zero disconnects, zero
// connection attempts refused; every client received every message of its room exactly once and
// in seq order; every send was acked once, under the seq the store has; each old process is gone
// within 5 s of its successor's readiness (its log's own times); every connection was handed
// over each time, none drained.
//
// PARLEY_LIVE_LOAD_CLIENTS (default 500) sets the size; docs/benchmarks.md has the figures of a
// full run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ms, openRoom, uniqRoom } from '../chat/lib/chat.mjs';
import { Lineage, assertRun, gone, roomHistory, tightConnector } from './lib/upgrade.mjs';
import { TelnetRider, WsRider, drive } from './lib/riders.mjs';

const CLIENTS = Number(process.env.PARLEY_LIVE_LOAD_CLIENTS) || 500;
const ROOMS = 20;
const UPGRADES = 5;
const PAUSE_MS = 1000; // between one client's messages: CLIENTS per second in all
const READY_TO_GONE_MS = 5000;

const tsOf = (line) => Date.parse(line.fields.ts);

test(`live: ${UPGRADES} upgrades under load, ${CLIENTS} clients in ${ROOMS} rooms, half of them mid-message: nobody notices`, { timeout: ms(900000) }, async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '0', '--max-conns-per-ip', '0']);
  const { server } = lineage;
  const tag = process.pid % 1000;
  const rooms = Array.from({ length: ROOMS }, (_, i) => uniqRoom(`ll${i}`));
  for (const room of rooms) await openRoom(server, t, room); // guests do not create rooms (rule 60)
  const riders = [];
  for (let i = 0; i < CLIENTS; i++) {
    const room = rooms[i % ROOMS];
    riders.push(i % 5 === 4 ? new TelnetRider(server.telnetPort, `lt${tag}_${i}`, room) : new WsRider(server.httpPort, `lw${tag}_${i}`, room));
  }
  t.after(() => riders.forEach((r) => r.socket?.destroy()));
  for (let i = 0; i < riders.length; i += 50) await Promise.all(riders.slice(i, i + 50).map((r) => r.connect()));
  const connector = tightConnector(server.telnetPort, server.httpPort);
  const drivers = riders.map((r) => drive(r, PAUSE_MS));
  const ws = riders.filter((r) => r instanceof WsRider);
  const acked = () => ws.reduce((n, r) => n + r.acks.size, 0);
  const moreAcks = async (n) => {
    const want = acked() + n;
    while (acked() < want) {
      const problems = riders.flatMap((r) => r.problems);
      if (problems.length) throw new Error(`problems: ${problems.slice(0, 5).join('; ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const handovers = [];
  for (let u = 0; u < UPGRADES; u++) {
    await moreAcks(Math.min(2 * CLIENTS, 1000));
    // Half the clients (others each time) put out the first half of their next message.
    const cut = drivers.filter((_, i) => i % 2 === u % 2).map((d) => d.cut());
    await Promise.all(cut.map((c) => c.out));
    const { oldPid, newPid } = await lineage.upgrade();
    for (const c of cut) c.release();
    await gone(oldPid, ms(20000), `old process ${oldPid} to exit`);
    // The two processes' lines reach the log on their own pipes: wait for each, never assume one
    // is read because another process's later line was.
    const ready = await lineage.waitLog(oldPid, 'upgrade_ready');
    const stopped = await lineage.waitLog(oldPid, 'stopped');
    const adopted = await lineage.waitLog(newPid, 'handover_adopted');
    const done = await lineage.waitLog(oldPid, 'handover_done');
    handovers.push({
      oldPid,
      newPid,
      readyToGoneMs: tsOf(stopped) - tsOf(ready),
      handoverMs: tsOf(adopted) - tsOf(ready), // readiness to the moved connections going on
      adopted: Number(adopted.fields.connections),
      refused: Number(adopted.fields.refused),
      partial: Number(done.fields.partial),
      cut: cut.length,
    });
  }
  await moreAcks(Math.min(2 * CLIENTS, 1000));
  await connector.stop();
  await Promise.all(drivers.map((d) => d.stop()));

  t.diagnostic(`handovers: ${JSON.stringify(handovers.map(({ readyToGoneMs, handoverMs, adopted, partial }) => ({ readyToGoneMs, handoverMs, adopted, partial })))}`);
  assert.deepEqual(riders.flatMap((r) => r.problems), [], 'disconnects, errors or unexpected replies');
  assert.deepEqual(connector.failed, [], `connection attempts that failed (of ${connector.ok})`);
  for (const h of handovers) {
    assert.ok(h.readyToGoneMs <= READY_TO_GONE_MS, `old process ${h.oldPid} took ${h.readyToGoneMs} ms from its successor's readiness to exit`);
    assert.ok(h.adopted >= CLIENTS, `${h.adopted} connections adopted by ${h.newPid}, of ${CLIENTS}`);
    assert.equal(h.refused, 0);
    // The halves were read by the old process and moved as reader or line state (nearly all: a
    // half still in flight when input was held moves in the socket instead).
    assert.ok(h.partial >= 0.9 * h.cut, `${h.partial} connections moved mid-message, of ${h.cut} cut`);
  }
  const health = await lineage.healthz();
  assert.equal(health.upgrades, UPGRADES);
  assert.equal(health.upgrades_failed, 0);
  assert.equal(health.drained, 0);

  let total = 0;
  for (const room of rooms) {
    const history = await roomHistory(lineage, room);
    const latest = history.at(-1).seq;
    assertRun(history.map((m) => m.seq), 0, latest, `the store's seqs of ${room}`);
    const bySender = new Map(history.map((m) => [`${m.from}/${m.cid ?? m.text}`, m.seq]));
    const byText = new Map(history.map((m) => [`${m.from}: ${m.text}`, m.seq]));
    assert.equal(byText.size, history.length, `${room}: a message stored twice`);
    for (const r of riders) {
      if (r.room !== room) continue;
      if (r instanceof WsRider) {
        assert.equal(r.start, 0, `${r.name} joined ${room} before anyone sent`);
        assertRun(r.seqs, 0, latest, `${r.name}'s messages of ${room}`);
        for (const [cid, seq] of r.acks) assert.equal(bySender.get(`${r.name}/${cid}`), seq, `${cid} acked as ${seq}`);
        total += r.acks.size;
      } else {
        // Telnet lines carry no seq: their texts, mapped to the store's seqs, must be the run
        // (from the room's first message: everyone joined before anyone sent).
        assertRun(r.lines.map((text) => byText.get(text) ?? -1), 0, latest, `${r.name}'s lines of ${room}`);
        for (const text of r.echoed) assert.ok(byText.has(`${r.name}: ${text}`), `echoed "${text}" is not stored`);
      }
    }
  }
  assert.ok(total >= UPGRADES * Math.min(2 * CLIENTS, 1000), `only ${total} sends were acked`);
  await Promise.all(riders.map((r) => r.quit()));
});
