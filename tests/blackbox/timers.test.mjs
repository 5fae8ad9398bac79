// Keep-alive timers with --ping-interval 0.2 --idle-timeout 1: server pings, idle close 1001, live clients stay.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { OP, RawWs } from './lib/rawws.mjs';
import { openWs } from './lib/wsclient.mjs';
import { ms } from './lib/util.mjs';

const PING_WAIT = ms(3000); // for one ping, sent every 0.2 s
const IDLE_WAIT = ms(8000); // for the idle close, due after 1 s of silence

let server;

before(async () => {
  server = await startServer(['--ping-interval', '0.2', '--idle-timeout', '1']);
});

after(() => server?.stop());

async function openRaw(t) {
  const ws = await RawWs.open(server.httpPort, { path: '/ws' });
  t.after(() => ws.destroy());
  return ws;
}

// Next ping frame from the server, skipping other frames (the hello, pongs).
async function nextPing(ws, n) {
  for (;;) {
    const frame = await ws.nextFrame(PING_WAIT, `server ping #${n}`);
    assert.notEqual(frame.opcode, OP.CLOSE, `closed before ping #${n}: ${frame.payload}`);
    if (frame.opcode === OP.PING) return frame;
  }
}

test('the server sends pings (unmasked, at most 125 bytes)', async (t) => {
  const ws = await openRaw(t);
  for (let n = 1; n <= 2; n++) {
    const ping = await nextPing(ws, n);
    assert.equal(ping.masked, false);
    assert.equal(ping.fin, true);
    assert.ok(ping.payload.length <= 125);
  }
});

test('a client that never answers nor sends is closed with 1001 "idle timeout"', async (t) => {
  const ws = await openRaw(t);
  const { code, reason } = await ws.closeFrame(IDLE_WAIT);
  assert.equal(code, 1001);
  assert.equal(reason, 'idle timeout');
});

test('a client that answers pings is still open after 6 pings', async (t) => {
  const client = await openWs(server.wsUrl('/ws'));
  t.after(() => client.terminate());
  for (let n = 1; n <= 6; n++) await client.nextPing(PING_WAIT, `server ping #${n}`);
  assert.ok(client.isOpen, 'connection closed although it answered every ping');
});

test('any client frame counts as life: answering pings with pings keeps it open', async (t) => {
  const ws = await openRaw(t);
  for (let n = 1; n <= 8; n++) {
    await nextPing(ws, n);
    await ws.ping(`life ${n}`);
  }
  assert.equal(ws.conn.ended, false, 'connection closed although the client kept sending');
});
