// WebSocket upgrade on /ws and /echo: accept key, 426 for bad handshakes, the Origin rule (403),
// and --peer-urls (the nodes' pages accepted, GET /peers.json, the page's connect-src).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { exchange, get } from './lib/http.mjs';
import { acceptFor, newKey, upgradeRequest } from './lib/rawws.mjs';

// Sends one upgrade request (header overrides as in withHeaders) and returns {res, key}.
async function upgrade(port, { path = '/ws', headers = {}, version } = {}) {
  const key = headers['Sec-WebSocket-Key'] ?? newKey();
  const [res] = await exchange(port, upgradeRequest({ port, path, key, headers, version }));
  return { res, key };
}

function assertSwitched({ res, key }) {
  assert.equal(res.status, 101, `expected 101, got ${res.status} ${res.reason} ${res.text}`);
  assert.equal((res.headers.upgrade ?? '').toLowerCase(), 'websocket');
  assert.match(res.headers.connection ?? '', /\bupgrade\b/i);
  assert.equal(res.headers['sec-websocket-accept'], acceptFor(key));
}

function assertUpgradeRequired({ res }) {
  assert.equal(res.status, 426, `expected 426, got ${res.status} ${res.reason}`);
  assert.equal(res.headers['sec-websocket-version'], '13');
}

function assertForbidden({ res }) {
  assert.equal(res.status, 403, `expected 403, got ${res.status} ${res.reason}`);
}

const ECHO = ['--echo-endpoint'];

describe('handshake', () => {
  let server;
  let port;
  before(async () => {
    server = await startServer(ECHO);
    port = server.httpPort;
  });
  after(() => server?.stop());

  for (const path of ['/ws', '/echo']) {
    test(`${path}: a valid upgrade → 101 with the right Sec-WebSocket-Accept`, async () => {
      assertSwitched(await upgrade(port, { path }));
    });

    test(`${path}: Connection: keep-alive, Upgrade and Upgrade: WebSocket → 101`, async () => {
      const headers = { Connection: 'keep-alive, Upgrade', Upgrade: 'WebSocket' };
      assertSwitched(await upgrade(port, { path, headers }));
    });

    test(`${path}: permessage-deflate offered → 101 with it (deflate.test.mjs has the details)`, async () => {
      const headers = { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' };
      const result = await upgrade(port, { path, headers });
      assertSwitched(result);
      assert.match(result.res.headers['sec-websocket-extensions'] ?? '', /^permessage-deflate;/);
    });

    test(`${path}: another extension offered → 101 without extensions`, async () => {
      const headers = { 'Sec-WebSocket-Extensions': 'x-webkit-deflate-frame' };
      const result = await upgrade(port, { path, headers });
      assertSwitched(result);
      assert.equal(result.res.headers['sec-websocket-extensions'], undefined);
    });

    const failures = [
      ['missing Upgrade', { headers: { Upgrade: null } }],
      ['Upgrade: h2c', { headers: { Upgrade: 'h2c' } }],
      ['Connection without the upgrade token', { headers: { Connection: 'keep-alive' } }],
      ['missing Sec-WebSocket-Key', { headers: { 'Sec-WebSocket-Key': null } }],
      [
        'key of 15 bytes',
        { headers: { 'Sec-WebSocket-Key': Buffer.alloc(15, 7).toString('base64') } },
      ],
      ['key that is not base64', { headers: { 'Sec-WebSocket-Key': 'not*base64*at*all*!!!!' } }],
      ['Sec-WebSocket-Version: 8', { headers: { 'Sec-WebSocket-Version': '8' } }],
      ['missing Sec-WebSocket-Version', { headers: { 'Sec-WebSocket-Version': null } }],
      ['HTTP/1.0', { version: 'HTTP/1.0' }],
    ];
    for (const [name, opts] of failures) {
      test(`${path}: ${name} → 426 with Sec-WebSocket-Version: 13`, async () => {
        assertUpgradeRequired(await upgrade(port, { path, ...opts }));
      });
    }
  }

  describe('Origin (default: same host and port as Host)', () => {
    const origin = (value, host) => ({ headers: { Origin: value, ...(host && { Host: host }) } });
    const allowed = [
      ['no Origin', () => ({})],
      ['the same host and port', () => origin(`http://127.0.0.1:${port}`)],
      ['the same host in other case', () => origin(`http://example.COM:${port}`, `EXAMPLE.com:${port}`)],
      ['the https scheme', () => origin(`https://127.0.0.1:${port}`)],
      ['an upper-case scheme', () => origin(`HTTP://127.0.0.1:${port}`)],
      ['Host without port, Origin http without port', () => origin('http://example.com', 'example.com')],
      ['Host without port, Origin with :80', () => origin('http://example.com:80', 'example.com')],
      ['Host with :80, Origin http without port', () => origin('http://example.com', 'example.com:80')],
    ];
    for (const [name, opts] of allowed) {
      test(`${name} → 101`, async () => {
        assertSwitched(await upgrade(port, opts()));
      });
    }

    const refused = [
      ['another host', () => origin(`http://evil.example:${port}`)],
      ['another port', () => origin(`http://127.0.0.1:${port + 1}`)],
      ['Origin: null', () => origin('null')],
      ['Host without port, Origin on :8080', () => origin('http://example.com:8080', 'example.com')],
      ['https without port (443) vs Host on :80', () => origin('https://example.com', 'example.com:80')],
    ];
    for (const [name, opts] of refused) {
      test(`${name} → 403`, async () => {
        assertForbidden(await upgrade(port, opts()));
      });
    }

    test('/echo applies the Origin rule too → 403', async () => {
      assertForbidden(await upgrade(port, { path: '/echo', ...origin('http://evil.example') }));
    });
  });
});

describe('--allowed-origin', () => {
  let port;
  let server;
  before(async () => {
    server = await startServer([
      ...ECHO,
      '--allowed-origin',
      'http://app.example.com',
      '--allowed-origin',
      'https://other.example.org:8443',
    ]);
    port = server.httpPort;
  });
  after(() => server?.stop());

  const withOrigin = (value) => ({ headers: { Origin: value } });

  test('first listed origin → 101', async () => {
    assertSwitched(await upgrade(port, withOrigin('http://app.example.com')));
  });

  test('second listed origin (repeated option) → 101', async () => {
    assertSwitched(await upgrade(port, withOrigin('https://other.example.org:8443')));
  });

  test('same host as Host is still allowed → 101', async () => {
    assertSwitched(await upgrade(port, withOrigin(`http://127.0.0.1:${port}`)));
  });

  test('unlisted origin → 403', async () => {
    assertForbidden(await upgrade(port, withOrigin('http://evil.example')));
  });

  test('Origin: null → 403', async () => {
    assertForbidden(await upgrade(port, withOrigin('null')));
  });
});

describe('--allowed-origin "*"', () => {
  let port;
  let server;
  before(async () => {
    server = await startServer(['--allowed-origin', '*']);
    port = server.httpPort;
  });
  after(() => server?.stop());

  test('any origin → 101', async () => {
    assertSwitched(await upgrade(port, { headers: { Origin: 'http://anything.example:1234' } }));
  });

  test('Origin: null → 403', async () => {
    assertForbidden(await upgrade(port, { headers: { Origin: 'null' } }));
  });

  test('an upgrade of /echo without --echo-endpoint → 404', async () => {
    const { res } = await upgrade(port, { path: '/echo' });
    assert.equal(res.status, 404);
  });
});

describe('--peer-urls', () => {
  let port;
  let server;
  const PEERS = ['ws://node2.example:9999/ws', 'wss://node3.example/ws'];
  before(async () => {
    server = await startServer(['--peer-urls', PEERS.join(',')]);
    port = server.httpPort;
  });
  after(() => server?.stop());

  const withOrigin = (value) => ({ headers: { Origin: value } });

  test('a page of a listed node (ws:// URL: its http origin) → 101', async () => {
    assertSwitched(await upgrade(port, withOrigin('http://node2.example:9999')));
  });

  test('a page of a listed wss:// node (its https origin, port 443) → 101', async () => {
    assertSwitched(await upgrade(port, withOrigin('https://node3.example')));
  });

  test('the listed host on another port, or over the other scheme → 403', async () => {
    assertForbidden(await upgrade(port, withOrigin('http://node2.example:9998')));
    assertForbidden(await upgrade(port, withOrigin('http://node3.example')));
  });

  test('GET /peers.json lists them, and the page may connect to them (CSP connect-src)', async () => {
    const peers = await get(port, '/peers.json');
    assert.equal(peers.status, 200);
    assert.match(peers.headers['content-type'] ?? '', /^application\/json\b/i);
    assert.deepEqual(JSON.parse(peers.body.toString('utf8')), { urls: PEERS });
    const page = await get(port, '/');
    assert.match(page.headers['content-security-policy'] ?? '', new RegExp(`connect-src 'self' ${PEERS.join(' ')};`));
  });

  test('without the option: no peers, connect-src is the page\'s own server', async () => {
    const alone = await startServer();
    try {
      const peers = await get(alone.httpPort, '/peers.json');
      assert.deepEqual(JSON.parse(peers.body.toString('utf8')), { urls: [] });
      const page = await get(alone.httpPort, '/');
      assert.match(page.headers['content-security-policy'] ?? '', /connect-src 'self';/);
    } finally {
      await alone.stop();
    }
  });
});
