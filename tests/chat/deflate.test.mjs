// permessage-deflate on /ws with Node's ws client (which negotiates it): a room of compressing
// clients, room messages compressed once for all their recipients (and for replays from the
// ring), RSV1 on the wire, plain clients and telnet beside them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startChatServer } from './lib/server.mjs';
import { assertSeqRun, guest, openRoom, uniq, uniqRoom } from './lib/chat.mjs';
import { telnetLogin } from './lib/telnet.mjs';
import { scrape, sum } from './lib/metrics.mjs';
import { OP, RSV1, RawWs } from '../blackbox/lib/rawws.mjs';
import { compressMessage, compressedFrames, readMessage } from '../blackbox/lib/deflate.mjs';
import { EVENT_TIMEOUT } from '../blackbox/lib/util.mjs';

let server;

before(async () => {
  server = await startChatServer(['--rate-limit', '0', '--workers', '2']);
});

after(() => server?.dispose());

// ws compresses every message it sends (threshold 0), and takes compressed ones.
const DEFLATE = { perMessageDeflate: { threshold: 0 } };

const counters = async () => {
  const m = await scrape(server);
  return {
    shared: sum(m, 'parley_deflate_messages_total', { kind: 'shared' }),
    own: sum(m, 'parley_deflate_messages_total', { kind: 'own' }),
    discarded: sum(m, 'parley_deflate_discarded_total'),
    inflated: sum(m, 'parley_inflated_messages_total'),
    bytesIn: sum(m, 'parley_deflate_bytes_total', { stage: 'in' }),
    bytesOut: sum(m, 'parley_deflate_bytes_total', { stage: 'out' }),
    deliveries: sum(m, 'parley_deliveries_total'),
  };
};

// A raw /ws connection that offers deflate, logs in as a guest and joins room; frames are read
// by hand so RSV1 can be seen.
async function rawMember(t, room) {
  const ws = await RawWs.open(server.httpPort, {
    path: '/ws',
    headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' },
  });
  t.after(() => ws.destroy());
  assert.match(ws.response.headers['sec-websocket-extensions'], /^permessage-deflate/);
  const next = async (pred, what) => {
    for (;;) {
      const m = await readMessage(ws, { what });
      const json = JSON.parse(m.data);
      if (pred(json)) return { ...m, json };
    }
  };
  assert.equal((await next(() => true, 'hello')).json.type, 'hello');
  const send = (obj) => ws.sendRaw(compressedFrames(OP.TEXT, compressMessage(JSON.stringify(obj))));
  await send({ type: 'login', id: 1, name: uniq('raw') });
  await next((m) => m.id === 1 && m.type === 'welcome', 'welcome');
  await send({ type: 'join', id: 2, room });
  await next((m) => m.id === 2 && m.type === 'joined', 'joined');
  return { ws, next, send };
}

const textOf = (k) => `message ${k}: ${'the quick brown fox jumps over the lazy dog, '.repeat(3)}`;

test('a room of deflate clients: each message compressed once, for every recipient', async (t) => {
  const room = await openRoom(server, t, uniqRoom('z'));
  const N = 5;
  const M = 12;
  const members = [];
  for (let i = 0; i < N; i++) {
    const c = await guest(server, t, uniq('z'), DEFLATE);
    assert.equal(c.ws.extensions, 'permessage-deflate', 'the ws client did not negotiate deflate');
    await c.join(room);
    members.push(c);
  }
  const plain = await guest(server, t, uniq('p')); // no deflate: gets the same events, plain
  await plain.join(room);
  const raw = await rawMember(t, room);
  const tn = await telnetLogin(server, t, uniq('tn'));
  tn.send(`/join ${room}`);
  await tn.until(new RegExp(`You joined #${room}`));

  const before = await counters();
  const sender = members[0];
  const acks = await sender.sayMany(room, M, textOf);
  const first = acks[0].seq;
  for (const c of [...members, plain]) {
    const got = await c.messages(room, M);
    assertSeqRun(got, room, first, first + M - 1, c.label);
    got.forEach((m, i) => assert.equal(m.text, textOf(i + 1).trimEnd()));
  }
  // On the wire: RSV1 set, and each frame inflates alone to the event.
  for (let i = 1; i <= M; i++) {
    const m = await raw.next((j) => j.type === 'message', `message ${i} on the raw socket`);
    assert.ok(m.compressed, `message ${i} arrived without RSV1`);
    assert.ok(m.wire.length < m.data.length, 'the compressed frame is not smaller');
    assert.equal(m.json.text, textOf(i).trimEnd());
  }
  for (let i = 1; i <= M; i++) {
    const line = await tn.nextLine(/^\[#/);
    assert.ok(line.endsWith(textOf(i).trimEnd()), `telnet line ${i}: ${line}`);
  }

  const after = await counters();
  // One shared compression per message, however many recipients (N + 1 of them compress): not
  // N x M. The other of the two workers may race to make the same twin; the loser drops its
  // copy (discarded), so at most one per message here.
  assert.equal(after.shared - before.shared, M, 'shared compressions');
  assert.ok(after.deliveries - before.deliveries >= (N + 3) * M, 'deliveries');
  assert.ok(after.discarded - before.discarded <= M, 'more than one discarded twin per message');
  // Every send came compressed (threshold 0 on the client side) and was inflated.
  assert.ok(after.inflated - before.inflated >= M, 'inflated messages');
  assert.ok(after.bytesOut < after.bytesIn, 'compression made nothing smaller');

  // A join with since replays from the hub's ring: the twins made above are reused.
  const late = await rawMember(t, await openRoom(server, t, uniqRoom('other')));
  await late.send({ type: 'join', id: 3, room, since: first - 1 });
  await late.next((m) => m.id === 3 && m.type === 'joined', 'joined with since');
  for (let i = 1; i <= M; i++) {
    const m = await late.next((j) => j.type === 'message' && j.room === room, `replayed ${i}`);
    assert.ok(m.compressed);
    assert.equal(m.json.seq, first + i - 1);
  }
  const replayed = await counters();
  assert.equal(replayed.shared, after.shared, 'a replay from the ring compressed again');
});

test('replies to one connection are compressed for it alone (history)', async (t) => {
  const room = await openRoom(server, t, uniqRoom('h'));
  const c = await guest(server, t, uniq('h'), DEFLATE);
  await c.join(room);
  await c.sayMany(room, 20, textOf);
  const before = await counters();
  const reply = await c.request({ type: 'history', room, limit: 20 });
  assert.equal(reply.type, 'history');
  assert.equal(reply.messages.length, 20);
  assert.equal(reply.messages[19].text, textOf(20).trimEnd());
  const after = await counters();
  assert.ok(after.own - before.own >= 1, 'the history reply was not compressed');
});

test('a compressed message inflating past --max-message closes 1009; the room goes on', async (t) => {
  const room = await openRoom(server, t, uniqRoom('big'));
  const c = await guest(server, t, uniq('b'), DEFLATE);
  await c.join(room);
  // 100 KB of JSON compresses to little; inflated it is over the 64 KiB limit.
  c.sendText(JSON.stringify({ type: 'send', room, text: 'a'.repeat(100000) }));
  const closed = await c.waitClosed(EVENT_TIMEOUT, 'the close after a message over the limit');
  assert.equal(closed.code, 1009);
  const d = await guest(server, t, uniq('b'), DEFLATE);
  await d.join(room);
  const ack = await d.say(room, textOf(1));
  assert.ok(ack.seq >= 1);
});

test('RSV1 on a continuation frame of /ws → 1002', async (t) => {
  const { ws } = await rawMember(t, await openRoom(server, t, uniqRoom('x')));
  const z = compressMessage(JSON.stringify({ type: 'ping', id: 9 }));
  await ws.send({ opcode: OP.TEXT, payload: z.subarray(0, 4), fin: false, rsv: RSV1 });
  await ws.send({ opcode: OP.CONT, payload: z.subarray(4), fin: true, rsv: RSV1 });
  const { code } = await ws.expectClose();
  assert.equal(code, 1002);
});
