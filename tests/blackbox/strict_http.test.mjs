// Strict HTTP: request-smuggling shapes refused, --public-host (421), the per-address connection
// limit and its default, and --trusted-proxy with X-Forwarded-For.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runParley, startServer } from './lib/server.mjs';
import { RawConn } from './lib/rawconn.mjs';
import { buildRequest, exchange, readResponse } from './lib/http.mjs';
import { upgradeRequest } from './lib/rawws.mjs';
import { EVENT_TIMEOUT } from './lib/util.mjs';

let server;
let port;

before(async () => {
  server = await startServer();
  port = server.httpPort;
});

after(() => server?.stop());

const host = () => ['Host', `127.0.0.1:${port}`];

// Sends raw bytes and expects one response with `status`, then the connection's end.
async function expectRefused(bytes, status, { to = port, localAddress } = {}) {
  const conn = await RawConn.connect(to, { localAddress });
  try {
    await conn.write(bytes);
    const res = await readResponse(conn);
    assert.equal(res.status, status, `answered ${res.status} ${res.reason}`);
    await conn.closed;
    assert.ok(conn.ended, 'the connection stays open after the refusal');
    return res;
  } finally {
    conn.destroy();
  }
}

for (const [name, headers] of [
  ['two Content-Length headers', [['Content-Length', '5'], ['Content-Length', '5']]],
  ['two different Content-Length headers', [['Content-Length', '0'], ['Content-Length', '5']]],
  ['a Content-Length list', [['Content-Length', '5, 5']]],
  ['a signed Content-Length', [['Content-Length', '+5']]],
  ['a negative Content-Length', [['Content-Length', '-1']]],
  ['a Content-Length that is not a number', [['Content-Length', 'five']]],
  ['an empty Content-Length', [['Content-Length', '']]],
  ['Transfer-Encoding: chunked', [['Transfer-Encoding', 'chunked']]],
  ['Transfer-Encoding: identity', [['Transfer-Encoding', 'identity']]],
  ['Transfer-Encoding with Content-Length', [['Content-Length', '5'], ['Transfer-Encoding', 'chunked']]],
  ['Content-Length with Transfer-Encoding', [['Transfer-Encoding', 'chunked'], ['Content-Length', '0']]],
]) {
  test(`smuggling shape: ${name} → 400 and close`, async () => {
    const body = '5\r\nhello\r\n0\r\n\r\n';
    const req = buildRequest({ method: 'POST', path: '/healthz', headers: [host(), ...headers], body });
    // The next request in the same write must never be answered: the connection ends.
    await expectRefused(req + buildRequest({ path: '/healthz', headers: [host()] }), 400);
  });
}

test('a GET with a plain Content-Length body is answered, then the connection closes (the body is never parsed)', async () => {
  const conn = await RawConn.connect(port);
  try {
    await conn.write(buildRequest({ path: '/healthz', headers: [host(), ['Content-Length', '14']], body: 'GET / HTTP/1.1' }));
    assert.equal((await readResponse(conn)).status, 200);
    await conn.closed;
  } finally {
    conn.destroy();
  }
});

test('a WebSocket upgrade that carries a body → 400 and close; Content-Length: 0 is fine', async () => {
  for (const path of ['/ws']) {
    const req = upgradeRequest({ port, path, headers: { 'Content-Length': '4' } });
    await expectRefused(req + 'abcd', 400);
    const zero = upgradeRequest({ port, path, headers: { 'Content-Length': '0' } });
    const [res] = await exchange(port, zero);
    assert.equal(res.status, 101);
  }
});

test('HTTP/1.1 without Host, or with two Host headers → 400; HTTP/1.0 without Host is served', async () => {
  await expectRefused(buildRequest({ path: '/healthz' }), 400);
  await expectRefused(buildRequest({ path: '/healthz', headers: [host(), host()] }), 400);
  await expectRefused(upgradeRequest({ port, path: '/ws', headers: { Host: null } }), 400);
  const [res] = await exchange(port, buildRequest({ path: '/healthz', version: 'HTTP/1.0' }));
  assert.equal(res.status, 200);
});

test('--public-host: only the listed names are served; any other Host → 421 and close', async (t) => {
  const s = await startServer(['--public-host', 'chat.example.org', '--public-host', 'localhost:8443']);
  t.after(() => s.stop());
  const p = s.httpPort;
  const ask = (hostValue, extra = []) => buildRequest({ path: '/healthz', headers: [['Host', hostValue], ...extra] });
  for (const ok of ['chat.example.org', 'Chat.Example.ORG:9999', 'localhost:8443']) {
    const [res] = await exchange(p, ask(ok));
    assert.equal(res.status, 200, `Host ${ok} answered ${res.status}`);
  }
  for (const bad of [`127.0.0.1:${p}`, 'evil.example.com', 'chat.example.org.evil.com', 'localhost', 'localhost:9999']) {
    const res = await expectRefused(ask(bad), 421, { to: p });
    assert.equal(res.reason, 'Misdirected Request');
  }
  // DNS rebinding: a hostile page's Origin and Host agree, so the Origin rule alone admits it.
  const rebound = upgradeRequest({ port: p, path: '/ws', headers: { Host: 'evil.example.com:80', Origin: 'http://evil.example.com' } });
  await expectRefused(rebound, 421, { to: p });
  const [ok] = await exchange(p, upgradeRequest({ port: p, path: '/ws', headers: { Host: 'chat.example.org', Origin: 'https://chat.example.org:80' } }));
  assert.equal(ok.status, 101);
  // The page itself too.
  await expectRefused(buildRequest({ path: '/', headers: [['Host', 'rebound.example']] }), 421, { to: p });
});

test('--public-host and --trusted-proxy refuse malformed values with exit 2', async () => {
  for (const args of [
    ['--public-host', 'http://chat.example.org'],
    ['--public-host', 'chat.example.org:0'],
    ['--public-host', ''],
    ['--trusted-proxy', '10.0.0.0/33'],
    ['--trusted-proxy', 'proxy.example'],
    ['--trusted-proxy', '::1/129'],
  ]) {
    const r = await runParley(args);
    assert.equal(r.code, 2, `${args.join(' ')} exited ${r.code}`);
    assert.match(r.stderr, new RegExp(args[0].slice(2)));
  }
});

// Opens connections that have sent nothing until `n` are open; returns them.
async function openMany(p, n, localAddress) {
  const conns = [];
  for (let i = 0; i < n; i++) conns.push(await RawConn.connect(p, { localAddress }));
  return conns;
}

test('the per-address limit is on by default: the 201st connection from one address → 503, another address is served', async (t) => {
  const s = await startServer();
  t.after(() => s.stop());
  const p = s.httpPort;
  const conns = await openMany(p, 200, '127.0.0.3');
  t.after(() => conns.forEach((c) => c.destroy()));
  // They are all accepted and served (the last one answers a request).
  await conns[199].write(buildRequest({ path: '/healthz', headers: [['Host', `127.0.0.1:${p}`]] }));
  assert.equal((await readResponse(conns[199])).status, 200);
  await expectRefused(buildRequest({ path: '/healthz', headers: [['Host', `127.0.0.1:${p}`]] }), 503, { to: p, localAddress: '127.0.0.3' });
  const [other] = await exchange(p, buildRequest({ path: '/healthz', headers: [['Host', `127.0.0.1:${p}`]] }), { localAddress: '127.0.0.4' });
  assert.equal(other.status, 200);
  // One closes: there is room again.
  conns[0].destroy();
  await conns[0].closed;
  // The server learns of the close from its kernel, a moment later: poll until it has.
  let status;
  const deadline = Date.now() + EVENT_TIMEOUT;
  do {
    [{ status }] = await exchange(p, buildRequest({ path: '/healthz', headers: [['Host', `127.0.0.1:${p}`]] }), { localAddress: '127.0.0.3' });
  } while (status !== 200 && Date.now() < deadline && (await new Promise((r) => setTimeout(r, 20, true))));
  assert.equal(status, 200, 'a closed connection still counts against its address');
});

test('--trusted-proxy: WebSockets are counted by X-Forwarded-For\'s client, the proxy itself is not limited', async (t) => {
  const s = await startServer(['--trusted-proxy', '127.0.0.2', '--max-conns-per-ip', '2']);
  t.after(() => s.stop());
  const p = s.httpPort;
  const viaProxy = { localAddress: '127.0.0.2' };
  const upgradeFor = (client, extra = {}) => upgradeRequest({ port: p, path: '/ws', headers: { 'X-Forwarded-For': client, ...extra } });
  const held = [];
  t.after(() => held.forEach((c) => c.destroy()));
  // Open an upgraded WebSocket through the proxy for `xff`; resolves with its status.
  const openWs = async (xff, extra) => {
    const conn = await RawConn.connect(p, viaProxy);
    held.push(conn);
    await conn.write(upgradeFor(xff, extra));
    return (await readResponse(conn)).status;
  };
  // Two WebSockets for client A, the third refused; client B is unaffected.
  assert.equal(await openWs('203.0.113.7'), 101);
  assert.equal(await openWs('198.51.100.1, 203.0.113.7'), 101); // a forged left entry is ignored
  assert.equal(await openWs('203.0.113.7'), 503);
  assert.equal(await openWs('203.0.113.8'), 101);
  // The headers are read from the right, past the proxies listed; two headers form one list.
  assert.equal(await openWs('203.0.113.7, 127.0.0.2'), 503);
  assert.equal(await openWs('203.0.113.9', { 'x-forwarded-for': '127.0.0.2' }), 101);
  // More plain connections from the proxy than the limit: all served.
  const plain = await openMany(p, 5, '127.0.0.2');
  held.push(...plain);
  for (const c of plain) {
    await c.write(buildRequest({ path: '/healthz', headers: [['Host', `127.0.0.1:${p}`]] }));
    assert.equal((await readResponse(c)).status, 200);
  }
  // A client that is not a trusted proxy cannot pick its address with the header.
  const direct = [];
  t.after(() => direct.forEach((c) => c.destroy()));
  for (let i = 0; i < 2; i++) {
    const c = await RawConn.connect(p, { localAddress: '127.0.0.5' });
    direct.push(c);
    await c.write(upgradeRequest({ port: p, path: '/ws', headers: { 'X-Forwarded-For': `192.0.2.${i}` } }));
    assert.equal((await readResponse(c)).status, 101);
  }
  await expectRefused(upgradeRequest({ port: p, path: '/ws', headers: { 'X-Forwarded-For': '192.0.2.99' } }), 503, { to: p, localAddress: '127.0.0.5' });
});
