// RFC 6455 conformance on /echo with a raw client: protocol violations (1002/1007/1009), close handshake, ping/pong.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { OP, RSV1, RSV2, RSV3, RawWs, closePayload, encodeFrame } from './lib/rawws.mjs';
import { EVENT_TIMEOUT } from './lib/util.mjs';

let server;
let ws;

before(async () => {
  server = await startServer(['--echo-endpoint']);
});

after(() => server?.stop());

// Each test gets a fresh raw connection to /echo, destroyed afterwards.
async function open(t, opts = {}) {
  ws = await RawWs.open(server.httpPort, { path: '/echo', ...opts });
  t.after(() => ws.destroy());
  return ws;
}

// Awaits the server's close frame (answering it) and TCP end; asserts the status code.
async function assertCloses(code) {
  const result = await ws.expectClose();
  assert.equal(result.code, code, `server closed with ${result.code} '${result.reason}'`);
  return result;
}

// Reads one whole message (data frames until FIN); fails on anything but data frames.
async function readMessage(what = 'an echoed message') {
  const frames = [];
  for (;;) {
    const frame = await ws.nextNonPing(EVENT_TIMEOUT, what);
    assert.equal(frame.masked, false, 'server frames must not be masked');
    assert.equal(frame.rsv, 0, 'server frame has RSV bits set');
    assert.ok(frame.opcode <= OP.BINARY, `expected a data frame, got opcode ${frame.opcode}`);
    assert.equal(frame.opcode === OP.CONT, frames.length > 0, 'bad opcode sequence in the echo');
    frames.push(frame);
    if (frame.fin) break;
  }
  return { opcode: frames[0].opcode, payload: Buffer.concat(frames.map((f) => f.payload)) };
}

async function assertPong(payload) {
  const frame = await ws.nextFrame(EVENT_TIMEOUT, 'a pong');
  assert.equal(frame.opcode, OP.PONG, `expected a pong, got opcode ${frame.opcode}`);
  assert.equal(frame.masked, false);
  assert.ok(frame.payload.equals(Buffer.from(payload)), 'pong payload differs from the ping');
}

const bytes = (...list) => Buffer.from(list);
const text = (s) => Buffer.from(s, 'utf8');

describe('protocol errors → 1002', () => {
  test('an unmasked frame', async (t) => {
    await open(t);
    await ws.text('hello', { mask: false });
    await assertCloses(1002);
  });

  for (const [name, rsv] of [['RSV1', RSV1], ['RSV2', RSV2], ['RSV3', RSV3]]) {
    test(`a frame with ${name} set (no extension negotiated)`, async (t) => {
      await open(t);
      await ws.text('hello', { rsv });
      await assertCloses(1002);
    });
  }

  for (const opcode of [0x3, 0x7, 0xb, 0xf]) {
    test(`reserved opcode 0x${opcode.toString(16)}`, async (t) => {
      await open(t);
      await ws.send({ opcode, payload: 'x' });
      await assertCloses(1002);
    });
  }

  test('a continuation frame without a message started', async (t) => {
    await open(t);
    await ws.send({ opcode: OP.CONT, payload: 'orphan' });
    await assertCloses(1002);
  });

  test('a new text frame inside a fragmented message', async (t) => {
    await open(t);
    await ws.text('first part', { fin: false });
    await ws.text('intruder');
    await assertCloses(1002);
  });

  test('a new binary frame inside a fragmented text message', async (t) => {
    await open(t);
    await ws.text('first part', { fin: false });
    await ws.binary(bytes(1, 2, 3));
    await assertCloses(1002);
  });

  test('a ping with a 126-byte payload', async (t) => {
    await open(t);
    await ws.ping(Buffer.alloc(126, 0x61));
    await assertCloses(1002);
  });

  test('a close frame with a 126-byte payload', async (t) => {
    await open(t);
    await ws.send({ opcode: OP.CLOSE, payload: closePayload(1000, 'r'.repeat(124)) });
    await assertCloses(1002);
  });

  test('a fragmented ping (FIN=0)', async (t) => {
    await open(t);
    await ws.ping('part', { fin: false });
    await assertCloses(1002);
  });

  test('a close frame with a 1-byte payload', async (t) => {
    await open(t);
    await ws.send({ opcode: OP.CLOSE, payload: bytes(0x03) });
    await assertCloses(1002);
  });

  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
    test(`a close frame with the invalid code ${code}`, async (t) => {
      await open(t);
      await ws.close(code);
      await assertCloses(1002);
    });
  }

  test('a 64-bit length with its most significant bit set (close 1002 or 1009)', async (t) => {
    await open(t);
    await ws.sendRaw(encodeFrame({ opcode: OP.BINARY, payload: 'x', declaredLength: 1n << 63n }));
    const { code } = await ws.expectClose();
    assert.ok(code === 1002 || code === 1009, `closed with ${code}`);
  });
});

describe('invalid UTF-8 → 1007', () => {
  const invalid = [
    ['a lone 0xFF', bytes(0x61, 0xff, 0x62)],
    ['a lone continuation byte', bytes(0x80)],
    ['an overlong encoding of NUL', bytes(0xc0, 0x80)],
    ['an overlong 3-byte encoding', bytes(0xe0, 0x80, 0xaf)],
    ['a UTF-16 surrogate', bytes(0xed, 0xa0, 0x80)],
    ['a code point above U+10FFFF', bytes(0xf4, 0x90, 0x80, 0x80)],
    ['a sequence cut by an ASCII byte', bytes(0xe2, 0x82, 0x28)],
  ];
  for (const [name, payload] of invalid) {
    test(`a text message with ${name}`, async (t) => {
      await open(t);
      await ws.text(payload);
      await assertCloses(1007);
    });
  }

  test('a text message ending in the middle of a sequence', async (t) => {
    await open(t);
    await ws.text(Buffer.concat([text('ab'), bytes(0xe2, 0x82)]));
    await assertCloses(1007);
  });

  test('invalid UTF-8 split across fragments', async (t) => {
    await open(t);
    await ws.text(Buffer.concat([text('ab'), bytes(0xe2, 0x82)]), { fin: false });
    await ws.send({ opcode: OP.CONT, payload: bytes(0x28, 0x63) });
    await assertCloses(1007);
  });

  test('a fragmented message ending mid-sequence in its last (empty) fragment', async (t) => {
    await open(t);
    await ws.text(Buffer.concat([text('ab'), bytes(0xf0, 0x9f)]), { fin: false });
    await ws.send({ opcode: OP.CONT, payload: Buffer.alloc(0) });
    await assertCloses(1007);
  });

  test('fail fast: a bad byte in a first fragment closes before the message completes', async (t) => {
    await open(t);
    await ws.text(Buffer.concat([text('abc'), bytes(0xff), text('def')]), { fin: false });
    await assertCloses(1007);
  });

  test('fail fast: an impossible second byte (E0 80) in an unfinished fragment', async (t) => {
    await open(t);
    await ws.text(Buffer.concat([text('abc'), bytes(0xe0, 0x80)]), { fin: false });
    await assertCloses(1007);
  });

  test('fail fast: a bad byte early in a frame whose payload has not all arrived', async (t) => {
    await open(t);
    const payload = Buffer.concat([text('abcd'), bytes(0xff), Buffer.alloc(995, 0x61)]);
    const frame = encodeFrame({ opcode: OP.TEXT, payload });
    await ws.sendRaw(frame.subarray(0, 2 + 2 + 4 + 10)); // header, mask, 10 payload bytes
    await assertCloses(1007);
  });

  test('a close reason that is not UTF-8', async (t) => {
    await open(t);
    await ws.send({ opcode: OP.CLOSE, payload: Buffer.concat([closePayload(1000), bytes(0xff, 0xfe)]) });
    await assertCloses(1007);
  });
});

describe('message size', () => {
  test('a frame header announcing more than the limit → 1009 before the payload arrives', async (t) => {
    await open(t);
    const frame = encodeFrame({ opcode: OP.BINARY, payload: Buffer.alloc(0), declaredLength: 1 << 20 });
    await ws.sendRaw(frame); // header and mask only: the 1 MiB payload never comes
    await assertCloses(1009);
  });
});

describe('close handshake', () => {
  for (const code of [1000, 1001, 3000, 4999]) {
    test(`a close with code ${code} is answered with ${code}, then TCP closes`, async (t) => {
      await open(t);
      await ws.close(code, 'bye');
      const { code: answered, before } = await ws.closeFrame();
      assert.equal(answered, code);
      assert.equal(before.length, 0, 'frames before the close answer');
      await ws.conn.waitClosed(EVENT_TIMEOUT, 'TCP close after the close answer');
    });
  }

  test('a close without payload is answered with a close (no code or 1000)', async (t) => {
    await open(t);
    await ws.close();
    const { code } = await ws.closeFrame();
    assert.ok(code === 1005 || code === 1000, `answered with ${code}`);
    await ws.conn.waitClosed();
  });

  test('a close in the middle of a fragmented message is answered', async (t) => {
    await open(t);
    await ws.text('unfinished', { fin: false });
    await ws.close(1000);
    assert.equal((await ws.closeFrame()).code, 1000);
    await ws.conn.waitClosed();
  });

  test('a close with a valid UTF-8 reason is answered', async (t) => {
    await open(t);
    await ws.close(1000, 'ciao ✓');
    const { code } = await ws.closeFrame();
    assert.equal(code, 1000);
    await ws.conn.waitClosed();
  });
});

describe('ping/pong and valid framing', () => {
  for (const [name, payload] of [
    ['a short payload', text('are you there?')],
    ['an empty payload', Buffer.alloc(0)],
    ['a 125-byte payload', Buffer.alloc(125, 0x7a)],
  ]) {
    test(`a ping with ${name} gets a pong with the same payload`, async (t) => {
      await open(t);
      await ws.ping(payload);
      await assertPong(payload);
    });
  }

  test('an unsolicited pong is ignored', async (t) => {
    await open(t);
    await ws.send({ opcode: OP.PONG, payload: 'unsolicited' });
    await ws.ping('still there');
    await assertPong('still there');
  });

  test('a text message is echoed in unmasked frames', async (t) => {
    await open(t);
    await ws.text('hello raw');
    const msg = await readMessage();
    assert.equal(msg.opcode, OP.TEXT);
    assert.equal(msg.payload.toString(), 'hello raw');
  });

  test('a frame written one byte per TCP write is echoed', async (t) => {
    await open(t);
    const frame = encodeFrame({ opcode: OP.BINARY, payload: bytes(9, 8, 7, 6, 5) });
    await ws.sendRaw(frame, { split: [...frame.keys()].slice(1) });
    const msg = await readMessage();
    assert.equal(msg.opcode, OP.BINARY);
    assert.ok(msg.payload.equals(bytes(9, 8, 7, 6, 5)));
  });

  test('16-bit and 64-bit length encodings are accepted', async (t) => {
    await open(t);
    const payload = Buffer.alloc(300, 0x41);
    await ws.send({ opcode: OP.BINARY, payload, lengthBytes: 8 });
    const msg = await readMessage();
    assert.ok(msg.payload.equals(payload));
    await ws.send({ opcode: OP.BINARY, payload: Buffer.alloc(200, 0x42), lengthBytes: 2 });
    assert.equal((await readMessage()).payload.length, 200);
  });

  test('a character split across fragments, with a ping between, echoes whole', async (t) => {
    await open(t);
    const euro = text('€'); // e2 82 ac
    await ws.text(Buffer.concat([text('a'), euro.subarray(0, 1)]), { fin: false });
    await ws.ping('mid');
    await assertPong('mid');
    await ws.send({ opcode: OP.CONT, payload: euro.subarray(1, 2), fin: false });
    await ws.send({ opcode: OP.CONT, payload: Buffer.concat([euro.subarray(2), text('b')]) });
    const msg = await readMessage();
    assert.equal(msg.opcode, OP.TEXT);
    assert.equal(msg.payload.toString('utf8'), 'a€b');
  });

  test('frames sent in the same TCP write as the upgrade request are echoed', async (t) => {
    const early = encodeFrame({ opcode: OP.TEXT, payload: 'early' });
    const ping = encodeFrame({ opcode: OP.PING, payload: 'p' });
    await open(t, { pipelined: Buffer.concat([early, ping]) });
    assert.equal((await readMessage()).payload.toString(), 'early');
    await assertPong('p');
  });

  test('two frames in one TCP write and one frame across two writes are echoed', async (t) => {
    await open(t);
    const a = encodeFrame({ opcode: OP.TEXT, payload: 'one' });
    const b = encodeFrame({ opcode: OP.TEXT, payload: 'two' });
    const c = encodeFrame({ opcode: OP.TEXT, payload: 'three' });
    await ws.sendRaw(Buffer.concat([a, b, c]), { split: [a.length + b.length + 3] });
    for (const expected of ['one', 'two', 'three']) {
      assert.equal((await readMessage()).payload.toString(), expected);
    }
  });
});
