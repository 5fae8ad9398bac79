// Live upgrades with WebSocket frames cut in two by the client: the old process reads the first
// part and moves the frame reader's state, the new one reads the rest. Each cut point of a frame
// (inside the header, the length, the mask; the payload at each mask phase; inside a UTF-8
// character; between fragments and inside a ping between them; a compressed message's header)
// gives the message its sender meant, stored once; and a ping that comes while a client's frame
// is half out (the live load test's clients answer it after the frame) costs nothing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { eventually, ms, openRoom, uniq, uniqRoom } from '../chat/lib/chat.mjs';
import { RawChat } from '../chat/lib/rawchat.mjs';
import { OP, RawWs, encodeFrame } from '../blackbox/lib/rawws.mjs';
import { compressMessage, compressedFrames } from '../blackbox/lib/deflate.mjs';
import { Lineage, roomHistory } from './lib/upgrade.mjs';
import { WsRider } from './lib/riders.mjs';

// Bytes the server has not read yet from the loopback connection between its port and the
// client's (the receive queue of the server's socket, from /proc/net/tcp).
function unreadByServer(serverPort, clientPort) {
  const hex = (p) => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    if (f[1].endsWith(`:${hex(serverPort)}`) && f[2].endsWith(`:${hex(clientPort)}`)) return parseInt(f[4].split(':')[1], 16);
  }
  return null;
}

// The frames of one chat request, and where to cut them.
function cases(room) {
  const out = [];
  const json = (cid, text) => JSON.stringify({ type: 'send', room, text, cid, id: 7 });
  // Long enough for a 2-byte extended length: header 2 + 2 + mask 4.
  const long = (cid) => `${cid}: h\u00e9llo \u{1F389} ${'x'.repeat(140)}`;
  const at = (name, cut) => {
    const cid = uniq('c');
    const text = long(cid);
    const frame = encodeFrame({ opcode: OP.TEXT, payload: json(cid, text) });
    assert.equal(frame[1] & 0x7f, 126);
    out.push({ name, cid, text, bytes: frame, cut });
  };
  at('after the first header byte', 1);
  at('after the length byte', 2);
  at('inside the extended length', 3);
  at('before the mask', 4);
  at('inside the mask', 6);
  at('right after the mask', 8);
  for (let phase = 1; phase <= 4; phase++) at(`in the payload, mask phase ${phase % 4}`, 8 + phase);
  for (let k = 1; k <= 3; k++) {
    // Inside a four-byte character, after each of its first three bytes.
    const cid = uniq('c');
    const text = long(cid);
    const payload = Buffer.from(json(cid, text));
    const i = payload.indexOf(Buffer.from('\u{1F389}'));
    out.push({ name: `inside a UTF-8 character, after its byte ${k}`, cid, text, bytes: encodeFrame({ opcode: OP.TEXT, payload }), cut: 8 + i + k });
  }
  const short = (name, cut) => {
    const cid = uniq('c');
    const text = `${cid} short`;
    const frame = encodeFrame({ opcode: OP.TEXT, payload: json(cid, text) });
    out.push({ name, cid, text, bytes: frame, cut: cut(frame) });
  };
  short('a short frame, in the payload', () => 6 + 5);
  short('one byte short of the end', (frame) => frame.length - 1);
  {
    // A message in two fragments with a ping between them.
    const fragments = (cid) => {
      const text = long(cid);
      const payload = Buffer.from(json(cid, text));
      const first = encodeFrame({ opcode: OP.TEXT, fin: false, payload: payload.subarray(0, 50) });
      const ping = encodeFrame({ opcode: OP.PING, payload: 'pi' });
      const rest = encodeFrame({ opcode: OP.CONT, payload: payload.subarray(50) });
      return { text, first, ping, rest, bytes: Buffer.concat([first, ping, rest]) };
    };
    const add = (name, where) => {
      const cid = uniq('c');
      const f = fragments(cid);
      out.push({ name, cid, text: f.text, bytes: f.bytes, cut: where(f) });
    };
    add('inside the first fragment', () => 20);
    add('between the fragments', (f) => f.first.length);
    add('inside the header of a ping between the fragments', (f) => f.first.length + 3);
    add('inside the payload of a ping between the fragments', (f) => f.first.length + 7);
    add('after the ping, inside the last fragment\'s header', (f) => f.first.length + f.ping.length + 1);
    add('inside the last fragment', (f) => f.first.length + f.ping.length + 12);
  }
  return out;
}

// A compressed request (permessage-deflate), cut at `cut`.
function compressedCase(room, name, cut) {
  const cid = uniq('z');
  const text = `${cid}: compressed ${'y'.repeat(200)}`;
  const bytes = compressedFrames(OP.TEXT, compressMessage(JSON.stringify({ type: 'send', room, text, cid, id: 7 })));
  return { name, cid, text, bytes, cut: cut === 'end' ? bytes.length - 1 : cut, deflate: true };
}

test('live: a WebSocket frame cut at any point is finished by the new process as its sender meant', { timeout: ms(120000) }, async (t) => {
  // The server never compresses (--deflate-threshold): the test reads its replies as plain JSON.
  const lineage = await Lineage.start(t, ['--deflate-threshold', '1000000000']);
  const { server } = lineage;
  const room = await openRoom(server, t, uniqRoom('cuts')); // guests do not create rooms (rule 60)
  const all = [
    ...cases(room),
    compressedCase(room, 'compressed: after the first header byte', 1),
    compressedCase(room, 'compressed: right after the mask', 6),
    compressedCase(room, 'compressed: inside the header of a long frame', 3),
  ];
  const clients = [];
  for (const c of all) {
    const headers = c.deflate ? { 'Sec-WebSocket-Extensions': 'permessage-deflate' } : {};
    const ws = await RawWs.open(server.httpPort, { path: '/ws', headers });
    const chat = new RawChat(ws);
    t.after(() => chat.ws.destroy());
    await chat.nextJson((m) => m.type === 'hello');
    assert.equal((await chat.request({ type: 'login', name: uniq('cut') })).type, 'welcome');
    assert.equal((await chat.request({ type: 'join', room })).type, 'joined');
    clients.push({ ...c, chat, port: ws.conn.socket.localPort });
  }
  for (const c of clients) await c.chat.ws.sendRaw(c.bytes.subarray(0, c.cut));
  // The old process has read every first part: its reader holds it when the upgrade comes.
  await eventually(() => clients.every((c) => unreadByServer(server.httpPort, c.port) === 0), ms(10000), 'the first parts read by the server');

  const { oldPid, newPid } = await lineage.upgrade();
  const done = await lineage.waitLog(oldPid, 'handover_done');
  const adopted = await lineage.waitLog(newPid, 'handover_adopted');
  assert.equal(adopted.fields.refused, '0', `records refused: ${lineage.lines(newPid).filter((l) => /refus/.test(l.text)).map((l) => l.text).join('\n')}`);
  assert.equal(done.fields.drained, '0', 'connections drained');
  assert.ok(Number(done.fields.partial) >= clients.length, `${done.fields.partial} moved mid-frame, of ${clients.length}`);
  for (const c of clients) await c.chat.ws.sendRaw(c.bytes.subarray(c.cut));
  const seqs = new Map();
  for (const c of clients) {
    const reply = await c.chat.nextJson((m) => m.id === 7, ms(10000), `the ack of the frame cut ${c.name}`);
    assert.equal(reply.type, 'ack', `${c.name}: ${JSON.stringify(reply)}`);
    seqs.set(c.cid, reply.seq);
  }
  const history = await roomHistory(lineage, room);
  for (const c of clients) {
    const stored = history.filter((m) => m.cid === c.cid);
    assert.equal(stored.length, 1, `${c.name}: stored ${stored.length} times`);
    assert.equal(stored[0].text, c.text, `${c.name}: the text stored`);
    assert.equal(stored[0].seq, seqs.get(c.cid));
  }
});

test('live: a ping that comes while a client has half a frame out, before and after the handover, is answered after the frame', { timeout: ms(60000) }, async (t) => {
  const lineage = await Lineage.start(t, ['--ping-interval', '1']);
  const { server } = lineage;
  const room = await openRoom(server, t, uniqRoom('pingcut'));
  const rider = new WsRider(server.httpPort, uniq('pc'), room);
  t.after(() => rider.socket?.destroy());
  await rider.connect();
  let release;
  const split = new Promise((r) => (release = r));
  const reply = rider.request({ type: 'send', room, text: 'half, a ping, the other half', cid: 'pc-1' }, { split });
  const pinged = () => `pinged, then ${JSON.stringify(rider.problems)}`;
  assert.ok(await rider.nextPing(), pinged()); // by the old process, while the frame is half out
  await lineage.upgrade();
  assert.ok(await rider.nextPing(), pinged()); // by the new one
  release();
  const ack = await reply;
  assert.equal(ack?.type, 'ack', `the reply: ${JSON.stringify(ack)}`);
  assert.ok(rider.pongsDeferred >= 2, `${rider.pongsDeferred} pongs waited for the frame`);
  // The pongs that waited were read as pongs: the connection goes on.
  assert.equal((await rider.request({ type: 'send', room, text: 'after', cid: 'pc-2' }))?.type, 'ack');
  assert.deepEqual(rider.problems, []);
});
