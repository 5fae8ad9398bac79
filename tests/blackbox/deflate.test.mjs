// permessage-deflate (RFC 7692) with a raw client: negotiation for each Autobahn-13 offer, compressed
// messages of 16 B..128 KiB in frames of 1 B..64 KiB echoed back, RSV1 rules (1002), bad data
// (1007), size limits and bombs (1009), --deflate off and --deflate-threshold.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { exchange } from './lib/http.mjs';
import { OP, RSV1, RSV2, RawWs, newKey, upgradeRequest } from './lib/rawws.mjs';
import {
  AUTOBAHN_OFFERS,
  compressMessage,
  compressedFrames,
  inflateMessage,
  peakRss,
  readMessage,
} from './lib/deflate.mjs';
import { EVENT_TIMEOUT, ms } from './lib/util.mjs';

const EXT = 'Sec-WebSocket-Extensions';
const CHROMIUM_OFFER = 'permessage-deflate; client_max_window_bits';
const THRESHOLD = 128; // the default --deflate-threshold
const BIG_TIMEOUT = ms(30000);

// Exactly n bytes of chat-like UTF-8 text (multi-byte characters included), compressible.
function textOf(n, seed = 1) {
  const words = ['hello', 'parley', 'room', 'ünïcödé', 'message', '🎉', 'deflate', 'alice', 'bob', 'général'];
  const parts = [];
  let bytes = 0;
  let x = seed;
  while (bytes < n) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const w = `${words[x % words.length]} `;
    parts.push(w);
    bytes += Buffer.byteLength(w);
  }
  let buf = Buffer.from(parts.join(''));
  let end = n;
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--; // cut at a character boundary
  buf = Buffer.concat([buf.subarray(0, end), Buffer.alloc(n - end, 'x')]);
  assert.equal(buf.length, n);
  return buf;
}

// Exactly n bytes of random UTF-8 (code points of 1 to 4 bytes): valid text that barely compresses.
function randomText(n) {
  const out = [];
  let bytes = 0;
  const pick = randomBytes(4 * n);
  for (let i = 0; bytes < n; i += 4) {
    const left = n - bytes;
    const r = pick.readUInt32LE(i);
    let cp;
    if (left >= 4 && r % 4 === 0) cp = 0x10000 + (r % 0xfffff);
    else if (left >= 3 && r % 4 === 1) cp = 0x4e00 + (r % 0x5200);
    else if (left >= 2 && r % 4 === 2) cp = 0x80 + (r % 0x780);
    else cp = 0x20 + (r % 0x5f);
    const ch = String.fromCodePoint(cp);
    out.push(ch);
    bytes += Buffer.byteLength(ch);
  }
  const buf = Buffer.from(out.join(''));
  assert.equal(buf.length, n);
  return buf;
}

// Opens /echo (or path) offering `offer`; asserts the agreed extension is `response`.
async function openDeflate(port, { offer = CHROMIUM_OFFER, path = '/echo', response } = {}) {
  const ws = await RawWs.open(port, { path, headers: { [EXT]: offer } });
  const got = ws.response.headers['sec-websocket-extensions'];
  if (response !== undefined) assert.equal(got, response, `offer "${offer}"`);
  else assert.match(got ?? '', /^permessage-deflate/, `offer "${offer}" was not accepted`);
  return ws;
}

// Sends one compressed message (frames of fragSize) and returns what the server echoes.
async function echoCompressed(ws, opcode, data, { fragSize = 0, windowBits = 15 } = {}) {
  await ws.sendRaw(compressedFrames(opcode, compressMessage(data), fragSize));
  return readMessage(ws, { windowBits, timeoutMs: BIG_TIMEOUT, what: `the echo of ${data.length} bytes` });
}

async function assertCloses(ws, code, what) {
  const result = await ws.expectClose(BIG_TIMEOUT);
  assert.equal(result.code, code, `${what}: closed with ${result.code} '${result.reason}'`);
  return result;
}

describe('negotiation', () => {
  let server;
  before(async () => {
    server = await startServer(['--echo-endpoint']);
  });
  after(() => server?.stop());

  for (const path of ['/echo', '/ws']) {
    for (const o of AUTOBAHN_OFFERS) {
      test(`${path}: Autobahn offer "${o.name}" → ${o.response}`, async (t) => {
        const ws = await openDeflate(server.httpPort, { path, offer: o.offer, response: o.response });
        t.after(() => ws.destroy());
        if (path === '/ws') {
          const hello = await readMessage(ws, { what: 'hello' });
          assert.equal(JSON.parse(hello.data).type, 'hello');
        }
      });
    }

    test(`${path}: Chromium's and Node's offer → both no_context_takeover and client_max_window_bits=15`, async (t) => {
      const ws = await openDeflate(server.httpPort, {
        path,
        response: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15',
      });
      t.after(() => ws.destroy());
    });
  }

  for (const [what, offer] of [
    ['an unknown parameter', 'permessage-deflate; foo'],
    ['a repeated parameter', 'permessage-deflate; server_no_context_takeover; server_no_context_takeover'],
    ['server_max_window_bits without a value', 'permessage-deflate; server_max_window_bits'],
    ['server_max_window_bits=16', 'permessage-deflate; server_max_window_bits=16'],
    ['a value on client_no_context_takeover', 'permessage-deflate; client_no_context_takeover=1'],
    ['another extension only', 'x-webkit-deflate-frame'],
  ]) {
    test(`an offer with ${what} is declined: 101 without the extension`, async (t) => {
      const ws = await RawWs.open(server.httpPort, { headers: { [EXT]: offer } });
      t.after(() => ws.destroy());
      assert.equal(ws.response.headers['sec-websocket-extensions'], undefined);
      // ... and RSV1 is then a protocol error.
      await ws.sendRaw(compressedFrames(OP.TEXT, compressMessage('hello')));
      await assertCloses(ws, 1002, 'RSV1 without deflate');
    });
  }

  test('offers in two headers: the first acceptable one wins, quoted values allowed', async () => {
    const key = newKey();
    const port = server.httpPort;
    const request = upgradeRequest({ port, path: '/echo', key }).replace(
      '\r\n\r\n',
      `\r\n${EXT}: foo, permessage-deflate; bar\r\n${EXT}: permessage-deflate; server_max_window_bits="10"\r\n\r\n`,
    );
    const [res] = await exchange(port, request);
    assert.equal(res.status, 101);
    assert.equal(
      res.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10',
    );
  });
});

describe('compressed messages echoed (Autobahn 12 and 13 shapes)', () => {
  let server;
  before(async () => {
    server = await startServer(['--echo-endpoint', '--max-message', '262144']);
  });
  after(() => server?.stop());

  const SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072];
  const FRAGMENTS = [0, 1, 256, 4096, 65536];

  for (const opcode of [OP.TEXT, OP.BINARY]) {
    const kind = opcode === OP.TEXT ? 'text' : 'binary';
    test(`${kind}: sizes 16 B..128 KiB, frames of 1 B..64 KiB, each echoed and decodable alone`, async (t) => {
      const ws = await openDeflate(server.httpPort, { offer: AUTOBAHN_OFFERS[0].offer });
      t.after(() => ws.destroy());
      for (const size of SIZES) {
        // Autobahn 12.x sends payloads of both kinds: compressible and random.
        const random = opcode === OP.TEXT ? randomText(size) : randomBytes(size);
        for (const data of [textOf(size, size), random]) {
          const compressed = compressMessage(data);
          for (const frag of FRAGMENTS) {
            if (frag === 1 && compressed.length > 3000) continue; // thousands of frames: enough below
            if (frag >= compressed.length && frag !== FRAGMENTS[FRAGMENTS.length - 1]) continue;
            const echo = await echoCompressed(ws, opcode, data, { fragSize: frag });
            const label = `${kind} ${size} B in ${frag || 'one'}-byte frames`;
            assert.equal(echo.opcode, opcode, label);
            assert.ok(echo.data.equals(data), `${label}: echo differs`);
            // Compressible data at or over the threshold comes back compressed (and smaller);
            // random data does not compress, so it comes back as it is.
            const compressible = data.length >= THRESHOLD && compressed.length < data.length;
            if (compressible) assert.ok(echo.compressed && echo.wire.length < size, `${label}: echo not compressed`);
            if (size < THRESHOLD) assert.equal(echo.compressed, false, `${label}: compressed below the threshold`);
          }
        }
      }
    });
  }

  for (const o of AUTOBAHN_OFFERS.slice(1)) {
    test(`offer "${o.name}": echoes decode with a window of 2^${o.serverBits} and no context`, async (t) => {
      const ws = await openDeflate(server.httpPort, { offer: o.offer, response: o.response });
      t.after(() => ws.destroy());
      for (const size of [16, 300, 1024, 65536, 131072]) {
        for (const frag of [0, 256]) {
          const data = textOf(size, size + frag);
          const echo = await echoCompressed(ws, OP.TEXT, data, { fragSize: frag, windowBits: o.serverBits });
          assert.ok(echo.data.equals(data), `${size} B: echo differs`);
          if (size >= THRESHOLD) assert.ok(echo.compressed, `${size} B: echo not compressed`);
        }
      }
    });
  }

  test('a server window of 2^8 is honoured: the echo does not decode with context from 2^15', async (t) => {
    // The check of the test above has teeth: what a 2^15 window compresses fails to inflate with
    // 2^8, so the server's echoes really were made for the smaller window.
    const data = textOf(65536, 7);
    assert.throws(() => inflateMessage(compressMessage(data), { windowBits: 8 }));
    const o = AUTOBAHN_OFFERS.find((x) => x.serverBits === 8);
    const ws = await openDeflate(server.httpPort, { offer: o.offer, response: o.response });
    t.after(() => ws.destroy());
    const echo = await echoCompressed(ws, OP.TEXT, data, { windowBits: 8 });
    assert.ok(echo.compressed && echo.data.equals(data));
  });

  test('a message ending in a BFINAL block, and a compressed empty message, are echoed', async (t) => {
    const ws = await openDeflate(server.httpPort);
    t.after(() => ws.destroy());
    const data = textOf(1000, 3);
    await ws.sendRaw(compressedFrames(OP.TEXT, compressMessage(data, { final: true })));
    assert.ok((await readMessage(ws)).data.equals(data));
    await ws.sendRaw(compressedFrames(OP.TEXT, Buffer.from([0x00]))); // RFC 7692 7.2.3.6
    const empty = await readMessage(ws);
    assert.equal(empty.opcode, OP.TEXT);
    assert.equal(empty.data.length, 0);
  });

  test('uncompressed messages are still accepted, fragmented, with pings between fragments', async (t) => {
    const ws = await openDeflate(server.httpPort);
    t.after(() => ws.destroy());
    const data = textOf(5000, 9);
    await ws.text(data.subarray(0, 2000), { fin: false });
    await ws.ping('between');
    await ws.send({ opcode: OP.CONT, payload: data.subarray(2000), fin: true });
    const pong = await ws.nextNonPing(EVENT_TIMEOUT, 'the pong');
    assert.equal(pong.opcode, OP.PONG);
    const echo = await readMessage(ws);
    assert.ok(echo.data.equals(data));
    assert.ok(echo.compressed, 'the echo of a plain message is compressed too');
    // A compressed message split across TCP writes and interleaved with a ping.
    const z = compressMessage(data);
    await ws.send({ opcode: OP.TEXT, payload: z.subarray(0, 10), fin: false, rsv: RSV1 });
    await ws.ping('again');
    await ws.send({ opcode: OP.CONT, payload: z.subarray(10), fin: true }, { split: [3, 7, 20] });
    assert.equal((await ws.nextNonPing()).opcode, OP.PONG);
    assert.ok((await readMessage(ws)).data.equals(data));
  });
});

describe('refused compressed input', () => {
  let server;
  before(async () => {
    server = await startServer(['--echo-endpoint']); // --max-message 65536
  });
  after(() => server?.stop());

  const open = async (t, opts) => {
    const ws = await openDeflate(server.httpPort, opts);
    t.after(() => ws.destroy());
    return ws;
  };
  const hello = compressMessage(textOf(500, 5));

  test('RSV1 on a continuation frame → 1002', async (t) => {
    const ws = await open(t);
    await ws.sendRaw(compressedFrames(OP.TEXT, hello, 100, { rsv1OnEvery: true }));
    await assertCloses(ws, 1002, 'RSV1 on a continuation');
  });

  test('RSV1 on the continuation of an uncompressed message → 1002', async (t) => {
    const ws = await open(t);
    await ws.text('abc', { fin: false });
    await ws.send({ opcode: OP.CONT, payload: 'def', rsv: RSV1 });
    await assertCloses(ws, 1002, 'RSV1 on a plain continuation');
  });

  for (const [name, opcode, payload] of [
    ['ping', OP.PING, 'p'],
    ['pong', OP.PONG, 'p'],
    ['close', OP.CLOSE, Buffer.from([0x03, 0xe8])],
  ]) {
    test(`RSV1 on a ${name} frame → 1002`, async (t) => {
      const ws = await open(t);
      await ws.send({ opcode, payload, rsv: RSV1 });
      await assertCloses(ws, 1002, `RSV1 on ${name}`);
    });
  }

  test('RSV2 with deflate negotiated → 1002', async (t) => {
    const ws = await open(t);
    await ws.send({ opcode: OP.TEXT, payload: hello, rsv: RSV1 | RSV2 });
    await assertCloses(ws, 1002, 'RSV2');
  });

  test('RSV1 without an offer → 1002', async (t) => {
    const ws = await RawWs.open(server.httpPort, { path: '/echo' });
    t.after(() => ws.destroy());
    await ws.sendRaw(compressedFrames(OP.TEXT, hello));
    await assertCloses(ws, 1002, 'RSV1 without deflate');
  });

  test('data that is not DEFLATE → 1007', async (t) => {
    const ws = await open(t);
    await ws.sendRaw(compressedFrames(OP.BINARY, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00])));
    await assertCloses(ws, 1007, 'invalid compressed data');
  });

  test('a compressed message cut short in the middle of a block → 1007', async (t) => {
    const ws = await open(t);
    await ws.sendRaw(compressedFrames(OP.BINARY, hello.subarray(0, hello.length >> 1)));
    await assertCloses(ws, 1007, 'truncated compressed data');
  });

  test('compressed text that is not UTF-8 → 1007', async (t) => {
    const ws = await open(t);
    const bad = Buffer.concat([textOf(300, 2), Buffer.from([0xc3, 0x28]), textOf(300, 3)]);
    await ws.sendRaw(compressedFrames(OP.TEXT, compressMessage(bad), 50));
    const { reason } = await assertCloses(ws, 1007, 'bad UTF-8');
    assert.match(reason, /UTF-8/);
    // The same bytes as binary are fine.
    const ws2 = await open(t);
    assert.ok((await echoCompressed(ws2, OP.BINARY, bad)).data.equals(bad));
  });

  test('a compressed message of exactly --max-message passes; one byte more → 1009', async (t) => {
    const ws = await open(t);
    const exact = textOf(65536, 11);
    assert.ok((await echoCompressed(ws, OP.TEXT, exact)).data.equals(exact));
    const over = textOf(65537, 11);
    assert.ok(compressMessage(over).length < 65536, 'the test needs a small compressed form');
    await ws.sendRaw(compressedFrames(OP.TEXT, compressMessage(over)));
    await assertCloses(ws, 1009, 'inflated past the limit');
  });

  test('a bomb (100 MB of zeros in ~100 KB) → 1009, with the server\'s memory bounded', async (t) => {
    const bomb = compressMessage(Buffer.alloc(100 * 1024 * 1024));
    assert.ok(bomb.length < 120 * 1024, `bomb of ${bomb.length} bytes`);
    const before = await peakRss(server.pid);
    for (const frag of [0, 4096]) {
      const ws = await open(t);
      await ws.sendRaw(compressedFrames(OP.BINARY, bomb, frag));
      await assertCloses(ws, 1009, `bomb in ${frag || 'one'}-byte frames`);
    }
    const after = await peakRss(server.pid);
    // A sanity bound, not a measurement: inflating the bomb would take 100 MB; the limit allows
    // 64 KiB per message. 32 MB leaves room for the sanitizer build's allocator.
    assert.ok(after - before < 32 * 1024 * 1024, `peak RSS grew by ${after - before} bytes`);
    // The server goes on serving.
    const ws = await open(t);
    const data = textOf(2000, 4);
    assert.ok((await echoCompressed(ws, OP.TEXT, data)).data.equals(data));
  });

  test('/ws: a compressed request is understood; compressed binary → 1003', async (t) => {
    const ws = await open(t, { path: '/ws' });
    assert.equal(JSON.parse((await readMessage(ws)).data).type, 'hello');
    await ws.sendRaw(compressedFrames(OP.TEXT, compressMessage(JSON.stringify({ type: 'ping', id: 'p1' }))));
    assert.deepEqual(JSON.parse((await readMessage(ws)).data), { type: 'pong', id: 'p1' });
    await ws.sendRaw(compressedFrames(OP.BINARY, compressMessage(textOf(300))));
    await assertCloses(ws, 1003, 'binary on /ws');
  });
});

describe('options', () => {
  test('--deflate off: the offer is declined, RSV1 is a protocol error', async (t) => {
    const server = await startServer(['--echo-endpoint', '--deflate', 'off']);
    t.after(() => server.stop());
    const ws = await RawWs.open(server.httpPort, { headers: { [EXT]: AUTOBAHN_OFFERS[0].offer } });
    t.after(() => ws.destroy());
    assert.equal(ws.response.headers['sec-websocket-extensions'], undefined);
    await ws.sendRaw(compressedFrames(OP.TEXT, compressMessage('hello')));
    await assertCloses(ws, 1002, 'RSV1 with --deflate off');
  });

  test('--deflate-threshold 1000: shorter messages go uncompressed', async (t) => {
    const server = await startServer(['--echo-endpoint', '--deflate-threshold', '1000']);
    t.after(() => server.stop());
    const ws = await openDeflate(server.httpPort);
    t.after(() => ws.destroy());
    for (const [size, compressed] of [[500, false], [999, false], [1000, true], [5000, true]]) {
      const data = textOf(size, 8);
      const echo = await echoCompressed(ws, OP.TEXT, data);
      assert.ok(echo.data.equals(data));
      assert.equal(echo.compressed, compressed, `${size} bytes`);
    }
  });

  test('--deflate-threshold 0: even a short compressible message is compressed', async (t) => {
    const server = await startServer(['--echo-endpoint', '--deflate-threshold', '0']);
    t.after(() => server.stop());
    const ws = await openDeflate(server.httpPort);
    t.after(() => ws.destroy());
    const echo = await echoCompressed(ws, OP.TEXT, Buffer.from('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'));
    assert.ok(echo.compressed);
    // ... unless compression would make it longer.
    const tiny = await echoCompressed(ws, OP.TEXT, Buffer.from('hi'));
    assert.equal(tiny.compressed, false);
    assert.equal(tiny.data.toString(), 'hi');
  });
});
