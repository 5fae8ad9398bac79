// The /ws chat endpoint at the framing level: hello greeting, --node, binary → 1003, /healthz connection count.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { get } from './lib/http.mjs';
import { openWs } from './lib/wsclient.mjs';
import { OP, RawWs } from './lib/rawws.mjs';
import { EVENT_TIMEOUT, withTimeout } from './lib/util.mjs';

const NODE_NAME = 'bb-node-7';

let server;

before(async () => {
  server = await startServer(['--node', NODE_NAME]);
});

after(() => server?.stop());

async function healthzConnections() {
  const res = await get(server.httpPort, '/healthz');
  assert.equal(res.status, 200);
  return JSON.parse(res.text).connections;
}

// Polls /healthz until its connection count is `expected` (the server may lag a close).
async function waitForConnections(expected) {
  let last;
  const poll = async () => {
    for (;;) {
      last = await healthzConnections();
      if (last === expected) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await withTimeout(poll(), EVENT_TIMEOUT, `/healthz connections == ${expected}`).catch((err) => {
    throw new Error(`${err.message} (last seen: ${last})`);
  });
}

test('the first frame after the upgrade is the hello greeting as one text frame', async () => {
  const ws = await RawWs.open(server.httpPort, { path: '/ws' });
  try {
    const frame = await ws.nextFrame(EVENT_TIMEOUT, 'the hello frame');
    assert.equal(frame.opcode, OP.TEXT);
    assert.equal(frame.fin, true);
    assert.equal(frame.rsv, 0);
    assert.equal(frame.masked, false, 'server frames must not be masked');
    const hello = JSON.parse(frame.payload.toString('utf8'));
    assert.equal(hello.type, 'hello');
    assert.equal(hello.server, 'parley');
    assert.equal(typeof hello.version, 'string');
    assert.match(hello.version, /^\d+\.\d+\.\d+/);
    assert.equal(hello.protocol, 1);
  } finally {
    ws.destroy();
  }
});

test('hello reports the --node name', async () => {
  const client = await openWs(server.wsUrl('/ws'));
  try {
    const hello = await client.nextJson(EVENT_TIMEOUT, 'hello');
    assert.equal(hello.type, 'hello');
    assert.equal(hello.node, NODE_NAME);
  } finally {
    client.terminate();
  }
});

test('hello version equals the /healthz version', async () => {
  const client = await openWs(server.wsUrl('/ws'));
  try {
    const hello = await client.nextJson(EVENT_TIMEOUT, 'hello');
    const res = await get(server.httpPort, '/healthz');
    assert.equal(hello.version, JSON.parse(res.text).version);
  } finally {
    client.terminate();
  }
});

test('a binary message on /ws → close 1003', async () => {
  const client = await openWs(server.wsUrl('/ws'));
  await client.nextJson(EVENT_TIMEOUT, 'hello');
  await client.send(Buffer.from([1, 2, 3]), { binary: true });
  const { code } = await client.waitClosed(EVENT_TIMEOUT, 'close after a binary message');
  assert.equal(code, 1003);
});

test('idle /ws connections are counted in /healthz "connections"', async () => {
  const base = await healthzConnections();
  const clients = [];
  for (let i = 0; i < 3; i++) clients.push(await openWs(server.wsUrl('/ws')));
  await Promise.all(clients.map((c) => c.nextJson(EVENT_TIMEOUT, 'hello')));
  assert.equal(await healthzConnections(), base + 3);
  await Promise.all(clients.map((c) => c.close()));
  await waitForConnections(base);
});
