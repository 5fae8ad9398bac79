// /echo with a conforming client: text/binary/empty echo, fragmentation with pings, size limit (1009), no hello.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { openWs } from './lib/wsclient.mjs';
import { OP, RawWs } from './lib/rawws.mjs';
import { EVENT_TIMEOUT, ms } from './lib/util.mjs';

const DEFAULT_MAX = 65536;
const BIG_TIMEOUT = ms(20000);

// Sends `data` and asserts the next message is the same bytes with the same type.
async function assertEchoes(client, data, { binary = false, timeoutMs = EVENT_TIMEOUT } = {}) {
  const msg = await client.roundTrip(data, { binary, timeoutMs });
  assert.equal(msg.isBinary, binary, 'echo has another message type');
  assert.ok(Buffer.from(data).equals(msg.data), `echo differs (${msg.data.length} bytes back)`);
}

// Sends `parts` as one fragmented message, pinging between fragments; checks pongs and the echo.
async function assertFragmentedEcho(client, parts, { binary }) {
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1;
    await client.send(part, { binary, fin: last });
    if (!last) {
      const payload = Buffer.from(`ping-${i}`);
      await client.ping(payload);
      const pong = await client.nextPong(EVENT_TIMEOUT, `pong for ping between fragments ${i}`);
      assert.ok(pong.equals(payload), `pong payload ${pong} != ${payload}`);
    }
  }
  const msg = await client.nextMessage(EVENT_TIMEOUT, 'echo of the fragmented message');
  assert.equal(msg.isBinary, binary);
  assert.ok(msg.data.equals(Buffer.concat(parts.map((p) => Buffer.from(p)))), 'echo differs');
}

describe('default limits', () => {
  let server;
  let client;
  before(async () => {
    server = await startServer(['--echo-endpoint']);
  });
  after(() => server?.stop());

  // A fresh client per test so a close in one test cannot affect the next.
  const open = async () => {
    client = await openWs(server.wsUrl('/echo'));
    return client;
  };
  const closeClient = () => client?.terminate();

  test('a text message is echoed', async (t) => {
    t.after(closeClient);
    await assertEchoes(await open(), 'hello, parley ✓ ünïcödé 🎉');
  });

  test('a binary message is echoed', async (t) => {
    t.after(closeClient);
    await assertEchoes(await open(), randomBytes(1000), { binary: true });
  });

  test('empty text and empty binary messages are echoed', async (t) => {
    t.after(closeClient);
    const c = await open();
    await assertEchoes(c, '');
    await assertEchoes(c, Buffer.alloc(0), { binary: true });
  });

  test('several messages in a row are echoed in order', async (t) => {
    t.after(closeClient);
    const c = await open();
    const texts = Array.from({ length: 20 }, (_, i) => `message ${i}`);
    await Promise.all(texts.map((text) => c.send(text)));
    for (const text of texts) {
      const msg = await c.nextMessage(EVENT_TIMEOUT, `echo of '${text}'`);
      assert.equal(msg.data.toString(), text);
    }
  });

  test('a fragmented text message with pings between fragments echoes whole', async (t) => {
    t.after(closeClient);
    await assertFragmentedEcho(await open(), ['frag one, ', 'frag two €, ', '', 'frag four'], {
      binary: false,
    });
  });

  test('a fragmented binary message with pings between fragments echoes whole', async (t) => {
    t.after(closeClient);
    const parts = [randomBytes(100), randomBytes(3000), randomBytes(1), randomBytes(500)];
    await assertFragmentedEcho(await open(), parts, { binary: true });
  });

  test('a ping gets a pong with the same payload', async (t) => {
    t.after(closeClient);
    const c = await open();
    const payload = randomBytes(125);
    await c.ping(payload);
    assert.ok((await c.nextPong()).equals(payload));
  });

  test(`a message of exactly ${DEFAULT_MAX} bytes is echoed (text and binary)`, async (t) => {
    t.after(closeClient);
    const c = await open();
    await assertEchoes(c, 'x'.repeat(DEFAULT_MAX), { timeoutMs: BIG_TIMEOUT });
    await assertEchoes(c, randomBytes(DEFAULT_MAX), { binary: true, timeoutMs: BIG_TIMEOUT });
  });

  test(`a message of ${DEFAULT_MAX + 1} bytes → close 1009`, async (t) => {
    t.after(closeClient);
    const c = await open();
    await c.send(randomBytes(DEFAULT_MAX + 1), { binary: true });
    const { code } = await c.waitClosed(BIG_TIMEOUT, 'close after an oversized message');
    assert.equal(code, 1009);
  });

  test('fragments adding up to more than the limit → close 1009', async (t) => {
    t.after(closeClient);
    const c = await open();
    await c.send('a'.repeat(40000), { fin: false });
    await c.send('b'.repeat(40000), { fin: true }).catch(() => {});
    const { code } = await c.waitClosed(BIG_TIMEOUT, 'close after oversized fragments');
    assert.equal(code, 1009);
  });

  test('20 concurrent clients each get their own 20 messages back in order', async (t) => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => openWs(server.wsUrl('/echo'))));
    t.after(() => clients.forEach((c) => c.terminate()));
    await Promise.all(
      clients.map(async (c, i) => {
        const sent = Array.from({ length: 20 }, (_, j) => randomBytes(1 + ((i * 997 + j * 131) % 9000)));
        await Promise.all(sent.map((data) => c.send(data, { binary: true })));
        for (const [j, data] of sent.entries()) {
          const msg = await c.nextMessage(BIG_TIMEOUT, `echo ${j} of client ${i}`);
          assert.ok(msg.data.equals(data), `client ${i} message ${j} differs`);
        }
      }),
    );
  });

  test('/echo sends no hello: the first frame is the pong to our ping', async (t) => {
    const ws = await RawWs.open(server.httpPort, { path: '/echo' });
    t.after(() => ws.destroy());
    await ws.ping('first');
    const frame = await ws.nextFrame(EVENT_TIMEOUT, 'the first frame from /echo');
    assert.equal(frame.opcode, OP.PONG, `first frame has opcode ${frame.opcode}, not a pong`);
    assert.equal(frame.payload.toString(), 'first');
  });
});

describe('--max-message 2097152', () => {
  let server;
  before(async () => {
    server = await startServer(['--echo-endpoint', '--max-message', '2097152']);
  });
  after(() => server?.stop());

  test('a 1 MiB binary message echoes intact', async (t) => {
    const client = await openWs(server.wsUrl('/echo'));
    t.after(() => client.terminate());
    await assertEchoes(client, randomBytes(1 << 20), { binary: true, timeoutMs: BIG_TIMEOUT });
  });

  test('a 1 MiB text message in 16 fragments echoes intact', async (t) => {
    const client = await openWs(server.wsUrl('/echo'));
    t.after(() => client.terminate());
    const part = 'ü'.repeat(32768); // 64 KiB of two-byte characters
    for (let i = 0; i < 16; i++) await client.send(part, { fin: i === 15 });
    const msg = await client.nextMessage(BIG_TIMEOUT, 'echo of 1 MiB text');
    assert.equal(msg.isBinary, false);
    assert.equal(msg.data.length, 1 << 20);
    assert.equal(msg.data.toString('utf8'), part.repeat(16));
  });

  test('a message of 2097153 bytes → close 1009', async (t) => {
    const client = await openWs(server.wsUrl('/echo'));
    t.after(() => client.terminate());
    await client.send(randomBytes(2097153), { binary: true }).catch(() => {});
    const { code } = await client.waitClosed(BIG_TIMEOUT, 'close after an oversized message');
    assert.equal(code, 1009);
  });
});
