// HTTP surface: GET / and /healthz, HEAD, gzip variants of the page's files, keep-alive and pipelining, 404/405/400/431/426, no /echo by default.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { RawConn } from './lib/rawconn.mjs';
import { buildRequest, exchange, get, httpRequest, readResponse } from './lib/http.mjs';
import { gunzipSync } from 'node:zlib';

const HEAD_LIMIT = 8192;

let server;
let port;

before(async () => {
  server = await startServer();
  port = server.httpPort;
});

after(() => server?.stop());

const hostHeader = () => ['Host', `127.0.0.1:${port}`];

// Request text with a Host header; `extra` headers follow it.
const request = (method, path, extra = []) =>
  buildRequest({ method, path, headers: [hostHeader(), ...extra] });

// A GET / whose head is exactly `size` bytes, padded with one X-Pad header.
function requestOfSize(size) {
  const prefix = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Pad: `;
  const suffix = '\r\n\r\n';
  const text = prefix + 'a'.repeat(size - prefix.length - suffix.length) + suffix;
  assert.equal(Buffer.byteLength(text), size);
  return text;
}

test('GET / serves the web client as text/html', async () => {
  const res = await get(port, '/');
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] ?? '', /^text\/html\b/i);
  assert.ok(res.body.length > 0, 'empty body');
});

test('GET /healthz answers JSON with status, version, connections and uptime', async () => {
  const res = await get(port, '/healthz');
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] ?? '', /^application\/json\b/i);
  const body = JSON.parse(res.text);
  assert.equal(body.status, 'ok');
  assert.equal(typeof body.version, 'string');
  assert.match(body.version, /^\d+\.\d+\.\d+/);
  assert.equal(typeof body.connections, 'number');
  // Any uptime field (uptime, uptime_s, uptime_ms...) holding a number.
  const uptimeKey = Object.keys(body).find((k) => /^uptime/.test(k));
  assert.ok(uptimeKey, `no uptime field in ${res.text}`);
  assert.equal(typeof body[uptimeKey], 'number');
  assert.ok(body[uptimeKey] >= 0);
});

test('HEAD / has the headers of GET / and no body', async () => {
  // Pipelined: a body after the HEAD response would corrupt the GET response that follows.
  const [head, getRes] = await exchange(port, request('HEAD', '/') + request('GET', '/'), {
    methods: ['HEAD', 'GET'],
  });
  assert.equal(head.status, 200);
  assert.equal(getRes.status, 200);
  assert.equal(head.headers['content-type'], getRes.headers['content-type']);
  if (getRes.headers['content-length'] !== undefined) {
    assert.equal(head.headers['content-length'], getRes.headers['content-length']);
  }
});

test('keep-alive: two requests one after the other on one connection', async () => {
  const conn = await RawConn.connect(port);
  try {
    await conn.write(request('GET', '/healthz'));
    const first = await readResponse(conn);
    assert.equal(first.status, 200);
    await conn.write(request('GET', '/'));
    const second = await readResponse(conn);
    assert.equal(second.status, 200);
    assert.match(second.headers['content-type'] ?? '', /^text\/html\b/i);
  } finally {
    conn.destroy();
  }
});

test('keep-alive: three pipelined requests in one write are answered in order', async () => {
  const responses = await exchange(
    port,
    request('GET', '/healthz') + request('GET', '/') + request('GET', '/nope'),
    { methods: ['GET', 'GET', 'GET'] },
  );
  assert.deepEqual(
    responses.map((r) => r.status),
    [200, 200, 404],
  );
  assert.equal(JSON.parse(responses[0].text).status, 'ok');
  assert.match(responses[1].headers['content-type'] ?? '', /^text\/html\b/i);
});

test('a request written one byte per TCP write is served', async () => {
  const conn = await RawConn.connect(port);
  try {
    const bytes = Buffer.from(request('GET', '/healthz'));
    await conn.writeSplit(bytes, [...bytes.keys()].slice(1));
    const res = await readResponse(conn);
    assert.equal(res.status, 200);
  } finally {
    conn.destroy();
  }
});

test('Connection: close → the server closes after the response', async () => {
  const conn = await RawConn.connect(port);
  try {
    await conn.write(request('GET', '/healthz', [['Connection', 'close']]));
    assert.equal((await readResponse(conn)).status, 200);
    await conn.waitClosed();
  } finally {
    conn.destroy();
  }
});

test('HTTP/1.0 without keep-alive → the server closes after the response', async () => {
  const conn = await RawConn.connect(port);
  try {
    await conn.write(buildRequest({ path: '/healthz', version: 'HTTP/1.0' }));
    assert.equal((await readResponse(conn)).status, 200);
    await conn.waitClosed();
  } finally {
    conn.destroy();
  }
});

test('a request body is not read as the next request', async () => {
  // After a 404 with a body, the server either serves the pipelined GET or closes:
  // it must not parse "hello" + the GET as a (malformed) request.
  const conn = await RawConn.connect(port);
  try {
    const post = request('POST', '/nope', [['Content-Length', '5']]) + 'hello';
    await conn.write(post + request('GET', '/healthz'));
    assert.equal((await readResponse(conn)).status, 404);
    const next = await readResponse(conn).catch((err) => err);
    if (next instanceof Error) {
      assert.ok(conn.ended, `neither a response nor a close: ${next.message}`);
    } else {
      assert.equal(next.status, 200);
    }
  } finally {
    conn.destroy();
  }
});

for (const [method, path] of [
  ['GET', '/nope'],
  ['GET', '/healthz/extra'],
  ['POST', '/nope'],
  ['DELETE', '/nope'],
]) {
  test(`${method} ${path} (unknown path) → 404`, async () => {
    const [res] = await exchange(port, request(method, path, [['Content-Length', '0']]));
    assert.equal(res.status, 404);
  });
}

for (const [method, path] of [
  ['POST', '/'],
  ['DELETE', '/healthz'],
  ['PUT', '/'],
  ['POST', '/ws'],
]) {
  test(`${method} ${path} (known path, wrong method) → 405`, async () => {
    const [res] = await exchange(port, request(method, path, [['Content-Length', '0']]));
    assert.equal(res.status, 405);
  });
}

for (const [name, bytes] of [
  ['request line without target', 'GET\r\n\r\n'],
  ['request line of two words', 'hello world\r\n\r\n'],
  ['header line without a colon', `GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n`],
]) {
  test(`malformed request (${name}) → 400`, async () => {
    const [res] = await exchange(port, bytes);
    assert.equal(res.status, 400);
  });
}

test(`request head of exactly ${HEAD_LIMIT} bytes is accepted`, async () => {
  const [res] = await exchange(port, requestOfSize(HEAD_LIMIT));
  assert.equal(res.status, 200);
});

test(`request head of ${HEAD_LIMIT + 1} bytes → 431`, async () => {
  const [res] = await exchange(port, requestOfSize(HEAD_LIMIT + 1));
  assert.equal(res.status, 431);
});

test('head size limit holds when the head arrives in many writes', async () => {
  for (const [size, status] of [
    [HEAD_LIMIT, 200],
    [HEAD_LIMIT + 1, 431],
  ]) {
    const conn = await RawConn.connect(port);
    try {
      const bytes = Buffer.from(requestOfSize(size));
      await conn.writeSplit(bytes, [1000, 4000, 4096, 8000, 8190, 8191, 8192].filter((n) => n < size));
      assert.equal((await readResponse(conn)).status, status, `head of ${size} bytes`);
    } finally {
      conn.destroy();
    }
  }
});

test('an unterminated head past the limit → 431 without waiting for its end', async () => {
  const bytes = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Pad: ${'b'.repeat(HEAD_LIMIT + 100)}`;
  const [res] = await exchange(port, bytes);
  assert.equal(res.status, 431);
});

test('GET /ws without an upgrade → 426 with Upgrade: websocket', async () => {
  const res = await get(port, '/ws');
  assert.equal(res.status, 426);
  assert.equal((res.headers.upgrade ?? '').toLowerCase(), 'websocket');
});

test('GET /echo without --echo-endpoint → 404', async () => {
  const res = await get(port, '/echo');
  assert.equal(res.status, 404);
});

// --- compressed files: tools/embed stores a gzip copy of each web/ file; the server picks a
// variant by Accept-Encoding (RFC 9110 12.5.3) and gives each its own ETag. ---

// GET (or HEAD) /index.html with an Accept-Encoding value (none when `accept` is undefined).
function fetchPage(accept, extra = [], method = 'GET') {
  const headers = [['Connection', 'close'], ...extra];
  if (accept !== undefined) headers.push(['Accept-Encoding', accept]);
  return httpRequest(port, { method, path: '/index.html', headers: [hostHeader(), ...headers] });
}

const isGzip = (res) => res.headers['content-encoding'] === 'gzip';

test('gzip: no Accept-Encoding gets the plain file; gzip gets bytes that gunzip to it', async () => {
  const plain = await fetchPage(undefined);
  assert.equal(plain.status, 200);
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(plain.headers.vary, 'Accept-Encoding');
  assert.match(plain.text, /<html/i);
  const packed = await fetchPage('gzip');
  assert.equal(packed.status, 200);
  assert.ok(isGzip(packed));
  assert.equal(packed.headers.vary, 'Accept-Encoding');
  assert.equal(Number(packed.headers['content-length']), packed.body.length);
  assert.ok(packed.body.length < plain.body.length / 2, `${packed.body.length} of ${plain.body.length}`);
  assert.deepEqual(gunzipSync(packed.body), plain.body);
  assert.equal(packed.headers['content-type'], plain.headers['content-type']);
});

test('gzip: Accept-Encoding is read per RFC 9110 (case, q-values, "*", refusals)', async () => {
  const cases = [
    ['gzip', true],
    ['GZip', true],
    ['x-gzip', true],
    ['gzip, deflate, br, zstd', true],
    ['br;q=1.0, gzip;q=0.8, *;q=0.1', true],
    ['gzip ; Q=0.5', true], // identity left unnamed is acceptable but not preferred
    ['*', true],
    ['identity;q=0.5, *', true],
    ['gzip;q=0', false],
    ['gzip;q=0.000', false],
    ['identity, *;q=0', false],
    ['*;q=0', false],
    ['gzip;q=0.5, identity', false],
    ['deflate, br', false],
    ['', false],
    ['gzip;q=2', false], // malformed q-value: the element is ignored
    ['gzip;q=0.5x', false],
    ['gzip junk', false],
    ['notgzip, gzipx', false],
  ];
  for (const [accept, gzip] of cases) {
    const res = await fetchPage(accept);
    assert.equal(res.status, 200, accept);
    assert.equal(isGzip(res), gzip, `Accept-Encoding: ${accept}`);
    assert.equal(res.headers.vary, 'Accept-Encoding', accept);
  }
});

test('gzip: Accept-Encoding on two header lines is one list', async () => {
  const res = await httpRequest(port, {
    path: '/index.html',
    headers: [hostHeader(), ['Connection', 'close'], ['Accept-Encoding', 'br'], ['Accept-Encoding', 'gzip']],
  });
  assert.ok(isGzip(res));
});

test('gzip: each variant has its own ETag and answers 304 to its own', async () => {
  const plain = await fetchPage(undefined);
  const packed = await fetchPage('gzip');
  assert.match(plain.headers.etag, /^"[0-9a-f]+"$/);
  assert.equal(packed.headers.etag, plain.headers.etag.replace(/"$/, '-gz"'));

  const plain304 = await fetchPage(undefined, [['If-None-Match', plain.headers.etag]]);
  assert.equal(plain304.status, 304);
  assert.equal(plain304.headers.etag, plain.headers.etag);
  assert.equal(plain304.headers.vary, 'Accept-Encoding');
  assert.equal(plain304.body.length, 0);

  const packed304 = await fetchPage('gzip', [['If-None-Match', `"nope", W/${packed.headers.etag}`]]);
  assert.equal(packed304.status, 304);
  assert.equal(packed304.headers.etag, packed.headers.etag);
  assert.equal(packed304.headers.vary, 'Accept-Encoding');
  // A 304's Content-Length, when sent, is the one the 200 would have had (RFC 9110 8.6).
  assert.equal(packed304.headers['content-length'], packed.headers['content-length']);

  // The other variant's validator does not validate this one: the full body comes back.
  const crossed = await fetchPage('gzip', [['If-None-Match', plain.headers.etag]]);
  assert.equal(crossed.status, 200);
  assert.ok(isGzip(crossed));
  const crossedBack = await fetchPage('gzip;q=0', [['If-None-Match', packed.headers.etag]]);
  assert.equal(crossedBack.status, 200);
  assert.deepEqual(crossedBack.body, plain.body);
});

test('gzip: HEAD has the headers GET has, for both variants', async () => {
  for (const accept of [undefined, 'gzip']) {
    const get_ = await fetchPage(accept);
    const head = await fetchPage(accept, [], 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    for (const name of ['content-length', 'content-encoding', 'etag', 'vary', 'content-type']) {
      assert.equal(head.headers[name], get_.headers[name], `${accept}: ${name}`);
    }
  }
});
