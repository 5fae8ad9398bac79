// Live upgrades (the default mode): every open plain connection moves to the new process with its
// state, and its client notices nothing. WebSocket and telnet sessions, an idle keep-alive HTTP
// connection, an /echo socket: none is closed, each goes on where it was (a frame, a telnet line
// and an HTTP request cut in two by the client are finished after the handover), messages keep
// their seqs with nothing lost or doubled, and the old process exits at once. A reader that
// stopped reading in the middle of a long replay gets the rest of it, exactly once, then what was
// said meanwhile. healthz and metrics count what was handed over. DMs in dm rooms nobody joined,
// sent all through two upgrades, reach every connection of both users exactly once, in order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatClient, dmRoom, guest, ms, tab, uniq, uniqRoom, user } from '../chat/lib/chat.mjs';
import { scrape, sum } from '../chat/lib/metrics.mjs';
import { RawChat } from '../chat/lib/rawchat.mjs';
import { telnetLogin } from '../chat/lib/telnet.mjs';
import { RawConn } from '../blackbox/lib/rawconn.mjs';
import { OP, RawWs, encodeFrame } from '../blackbox/lib/rawws.mjs';
import { readResponse } from '../blackbox/lib/http.mjs';
import { EXIT_MARGIN, Lineage, assertRun, gone } from './lib/upgrade.mjs';

// The two halves of a masked text frame carrying obj as JSON, cut in the middle of its payload.
function halves(obj) {
  const frame = encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify(obj) });
  const cut = Math.floor(frame.length / 2);
  return [frame.subarray(0, cut), frame.subarray(cut)];
}

const healthzRequest = (port) => `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;

test('live: WebSocket, telnet, keep-alive HTTP and /echo connections move unnoticed, halves of a frame, a line and a request are finished after', async (t) => {
  const lineage = await Lineage.start(t, ['--echo-endpoint']);
  const { server } = lineage;
  const room = uniqRoom('live');
  const a = await guest(server, t);
  const b = await guest(server, t);
  await a.join(room);
  await b.join(room);
  const tname = uniq('tl');
  const tn = await telnetLogin(server, t, tname);
  await tn.send(`/join ${room}`);
  await tn.nextLine(new RegExp(`You joined #${room}`));
  // A raw chat client, to cut a frame in two.
  const raw = await RawChat.open(server);
  t.after(() => raw.destroy());
  const rawName = uniq('rw');
  assert.equal((await raw.request({ type: 'login', name: rawName })).type, 'welcome');
  assert.equal((await raw.request({ type: 'join', room })).type, 'joined');
  // An idle keep-alive HTTP connection, answered once before.
  const http = await RawConn.connect(server.httpPort);
  t.after(() => http.destroy());
  await http.write(healthzRequest(server.httpPort));
  const first = JSON.parse((await readResponse(http)).text);
  assert.equal(first.pid, lineage.current);
  // An echo socket.
  const echo = await RawWs.open(server.httpPort, { path: '/echo' });
  t.after(() => echo.destroy());

  const before = await a.say(room, 'before the upgrade', { cid: 'b-1' });
  await b.nextMessage(room, (m) => m.seq === before.seq);
  for (const who of [tname, rawName]) await b.next((m) => m.type === 'presence' && m.user === who);
  // Halves: a frame, a telnet line, an HTTP request, an echo frame.
  const [rawHead, rawTail] = halves({ type: 'send', room, text: 'cut in two', cid: 'cut-1', id: 99 });
  await raw.ws.sendRaw(rawHead);
  await tn.write('a line typed in ');
  const req = healthzRequest(server.httpPort);
  await http.write(req.slice(0, 20));
  const echoFrame = encodeFrame({ opcode: OP.TEXT, payload: 'echo me across' });
  await echo.sendRaw(echoFrame.subarray(0, 5));

  const { oldPid, newPid } = await lineage.upgrade();
  await raw.ws.sendRaw(rawTail);
  await tn.write('two halves\r\n');
  await http.write(req.slice(20));
  await echo.sendRaw(echoFrame.subarray(5));

  const ack = await raw.nextJson((m) => m.id === 99, ms(5000), 'the ack of the frame cut in two');
  assert.equal(ack.type, 'ack');
  // (The frame and the telnet line were finished on two connections at once: either is first.)
  assert.ok(ack.seq === before.seq + 1 || ack.seq === before.seq + 2, `ack seq ${ack.seq}`);
  const line = await tn.nextLine((l) => l.includes('a line typed in two halves'), ms(5000), 'the echo of the line cut in two');
  assert.equal(line, `[#${room}] ${tname}: a line typed in two halves`);
  const second = JSON.parse((await readResponse(http)).text);
  assert.equal(second.pid, newPid, 'the keep-alive connection is answered by the new process');
  const echoed = await echo.nextNonPing();
  assert.equal(echoed.payload.toString(), 'echo me across');

  const after = await a.say(room, 'after the upgrade', { cid: 'a-1' });
  const seen = await b.messages(room, 3);
  assert.deepEqual(seen.map((m) => m.seq), [before.seq + 1, before.seq + 2, before.seq + 3]);
  assert.deepEqual(seen.map((m) => m.text).sort(), ['a line typed in two halves', 'after the upgrade', 'cut in two']);
  assert.equal(after.seq, before.seq + 3);
  // A retry of a send acked before the upgrade is the same message.
  assert.equal((await a.say(room, 'before the upgrade', { cid: 'b-1' })).seq, before.seq);
  for (const c of [a, b]) {
    assert.ok(c.isOpen, `${c.label} is open`);
    assert.equal(c.closeInfo, null, `${c.label} saw no close`);
  }
  assert.equal(tn.ended, false, 'the telnet connection is open');
  // Presence: nobody left or joined across the upgrade.
  assert.deepEqual(b.pending().filter((m) => m.type === 'presence'), []);

  await gone(oldPid, EXIT_MARGIN, 'the old process to exit once it holds nothing');
  const order = lineage.lines(oldPid).map((l) => l.fields.msg).filter((m) => /^(upgrade_|handover_|draining|stopped)/.test(m));
  assert.deepEqual(order.filter((m) => m !== 'handover_batch_sent'), [
    'upgrade_started', 'upgrade_ready', 'handover_quiet', 'upgrade_go', 'handover_done', 'upgrade_connections_moved',
    'upgrade_handed_over', 'draining', 'stopped',
  ]);
  const h = await lineage.healthz();
  assert.equal(h.pid, newPid);
  assert.equal(h.generation, 2);
  assert.equal(h.upgrades, 1);
  assert.equal(h.handed_over, 6, 'a, b, telnet, raw, http, echo');
  assert.equal(h.drained, 0);
  const m = await scrape(server);
  assert.equal(sum(m, 'parley_upgrade_connections_handed_over_total'), 6);
  assert.equal(sum(m, 'parley_upgrade_connections_drained_total'), 0);
  // The next upgrade carries the counts on.
  await lineage.upgrade();
  assert.equal((await lineage.healthz()).handed_over, 12, 'the same six again');
});

test('live: a reader paused in the middle of a long replay gets the rest exactly once after the upgrade, then what came meanwhile', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '0', '--ring-size', '32', '--max-text', '10000']);
  const { server } = lineage;
  const room = uniqRoom('replay');
  const writer = await guest(server, t);
  await writer.join(room);
  const big = 'x'.repeat(8000);
  const N = 600; // 4.8 MB, three pages: more than the kernel's buffers hold for a reader that does not read
  await writer.sayMany(room, N, (k) => `${k} ${big}`);
  const reader = await RawChat.open(server);
  t.after(() => reader.destroy());
  assert.equal((await reader.request({ type: 'login', name: uniq('rd') })).type, 'welcome');
  // Paused from here on: the replay (read from the store page by page) fills the kernel's
  // buffers, then the connection's queue, and the rest waits in its backlog as a range to read.
  reader.pause();
  await reader.send({ type: 'join', room, since: 0, id: 7 });
  const { oldPid, newPid } = await lineage.upgrade();
  assert.ok(lineage.lines(newPid).some((l) => l.fields.msg === 'handover_adopted'));
  // What moved: the replay under way, as output queued and not yet written and a range still to
  // read (how much of each depends on how far the kernel's buffers had taken it).
  const done = lineage.lines(oldPid).find((l) => l.fields.msg === 'handover_done');
  assert.ok(Number(done.fields.output_bytes) > 0 || done.fields.replays === '1', done.text);
  const later = await writer.say(room, 'said after the upgrade');
  assert.equal(later.seq, N + 1);
  reader.resume();
  const joined = await reader.nextJson((m) => m.id === 7, ms(20000), 'joined');
  assert.equal(joined.type, 'joined');
  const seqs = [];
  while (seqs.length < N + 1) {
    const msg = await reader.nextJson((x) => x.type === 'message', ms(20000), `message ${seqs.length + 1}`);
    seqs.push(msg.seq);
  }
  assertRun(seqs, 0, N + 1, 'the reader\'s replay and the message after it');
  assert.equal((await reader.request({ type: 'ping' })).type, 'pong');
});

test('live: DMs in dm rooms never joined, sent all through two upgrades, reach every connection of both users exactly once in seq order', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '0']);
  const { server } = lineage;
  // x on two connections, y and z on one each. x and y have a DM before the upgrades (each of
  // their connections has a place in the room); y and z have their first during the upgrades.
  const x = await user(server, t, uniq('dx'));
  const x2 = await tab(server, t, x);
  const y = await user(server, t, uniq('dy'));
  const z = await user(server, t, uniq('dz'));
  const xy = { room: dmRoom(x.name, y.name), conns: [x, x2, y], sent: [] };
  const yz = { room: dmRoom(y.name, z.name), conns: [y, z], sent: [] };
  const opening = await x.dm(y.name, 'before', { cid: 'xy-open' });
  xy.sent.push({ seq: opening.seq, text: 'before' });
  for (const c of xy.conns) await c.nextMessage(xy.room, (m) => m.seq === opening.seq);

  // Each sender on until both upgrades are over (its input held while a handover runs), then 3
  // more: every DM is acked, by one process or the other.
  let over = false;
  const sendOn = async (from, to, pair, tag) => {
    for (let k = 0; k < 3 || !over; k++) {
      const text = `${tag} ${k}`;
      const ack = await from.dm(to.name, text, { cid: `${tag}-${k}` });
      pair.sent.push({ seq: ack.seq, text });
    }
  };
  const senders = Promise.all([sendOn(x, y, xy, 'x>y'), sendOn(y, x, xy, 'y>x'), sendOn(x2, y, xy, 'x2>y'), sendOn(y, z, yz, 'y>z'), sendOn(z, y, yz, 'z>y')]);
  for (let u = 0; u < 2; u++) {
    const { oldPid } = await lineage.upgrade();
    await gone(oldPid, EXIT_MARGIN, 'the old process to exit once it holds nothing');
  }
  over = true;
  await senders;

  for (const pair of [xy, yz]) {
    const sent = pair.sent.sort((a, b) => a.seq - b.seq);
    const last = sent.at(-1).seq;
    for (const c of pair.conns) {
      assert.ok(c.isOpen && c.closeInfo === null, `${c.label} was never closed`);
      if (!c.log.some((m) => m.type === 'message' && m.room === pair.room && m.seq === last)) await c.nextMessage(pair.room, (m) => m.seq === last);
      const got = c.log.filter((m) => m.type === 'message' && m.room === pair.room);
      assertRun(got.map((m) => m.seq), sent[0].seq - 1, last, `${c.label} in ${pair.room}`);
      assert.deepEqual(got.map((m) => m.text), sent.map((m) => m.text), `${c.label}: the DM texts in seq order`);
    }
  }
});
