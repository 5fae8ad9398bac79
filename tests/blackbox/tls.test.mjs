// TLS on the HTTP port (--tls-cert/--tls-key), with certificates this test makes: HTTPS and
// wss:// verified against them, TLS versions, ciphers and ALPN, plain HTTP and garbage on the TLS
// port, a certificate with a chain, big /echo messages, the handshake deadline while other
// clients are served, and start-up refusals (exit 2).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { freshDataDir, runParley, startServer } from './lib/server.mjs';
import { buildRequest, readResponse } from './lib/http.mjs';
import { RawConn } from './lib/rawconn.mjs';
import { certDir, httpsGet, makeChain, makeCert, tlsConnect, tlsRefusal } from './lib/tls.mjs';
import { openWs } from './lib/wsclient.mjs';
import { EVENT_TIMEOUT, ms } from './lib/util.mjs';

const BIG_TIMEOUT = ms(20000);
const MIB = 1 << 20;

let dir;
let cert;
let server;

before(async () => {
  dir = certDir();
  cert = makeCert(dir.dir);
  server = await startServer([
    '--echo-endpoint', '--max-message', String(2 * MIB), '--log-level', 'debug',
    '--tls-cert', cert.certFile, '--tls-key', cert.keyFile,
  ]);
});

after(async () => {
  await server?.stop();
  dir?.remove();
});

const wssUrl = (path) => `wss://127.0.0.1:${server.httpPort}${path}`;

test('GET / and /healthz over HTTPS, verified against the certificate the test made', async () => {
  const page = await httpsGet(server.httpPort, '/', { ca: cert.ca });
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'], /^text\/html/);
  assert.match(page.text, /<html/i);
  const health = await httpsGet(server.httpPort, '/healthz', { ca: cert.ca });
  assert.equal(health.status, 200);
  const body = JSON.parse(health.text);
  assert.equal(body.status, 'ok');
  assert.equal(body.tls, true);
  assert.ok(body.tls_handshakes >= 2, `tls_handshakes ${body.tls_handshakes}`);
  assert.ok(body.tls_connections >= 1, `tls_connections ${body.tls_connections}`);
  // The verification is real: a client that does not trust the certificate refuses it.
  await assert.rejects(httpsGet(server.httpPort, '/healthz'), (err) => err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
});

test('the start-up log says which listeners speak TLS', () => {
  const fields = server.logLines().map((l) => l.fields);
  const http = fields.find((f) => f.msg === 'listening' && f.transport === 'http');
  const telnet = fields.find((f) => f.msg === 'listening' && f.transport === 'telnet');
  assert.equal(http.tls, 'true');
  assert.equal(telnet.tls, 'false');
  assert.equal(fields.find((f) => f.msg === 'ready').tls, 'http');
  const loaded = fields.find((f) => f.msg === 'tls_certificate');
  assert.equal(loaded.subject, '/CN=localhost');
});

test('TLS 1.2 and 1.3 are accepted, with ECDHE and an AEAD cipher', async () => {
  for (const version of ['TLSv1.2', 'TLSv1.3']) {
    const socket = await tlsConnect(server.httpPort, { ca: cert.ca, minVersion: version, maxVersion: version });
    try {
      assert.equal(socket.getProtocol(), version);
      const cipher = socket.getCipher().name;
      assert.match(cipher, /GCM|CHACHA20/, `${version} cipher ${cipher}`);
      if (version === 'TLSv1.2') assert.match(cipher, /^ECDHE-/, cipher);
    } finally {
      socket.destroy();
    }
  }
});

test('TLS 1.0 and 1.1 are refused with the protocol_version alert', async () => {
  for (const version of ['TLSv1', 'TLSv1.1']) {
    // SECLEVEL=0 so that our own OpenSSL is willing to offer the old version at all.
    const err = await tlsRefusal(server.httpPort, {
      ca: cert.ca, minVersion: version, maxVersion: version, ciphers: 'DEFAULT:@SECLEVEL=0',
    });
    assert.equal(err.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', `${version}: ${err.message}`);
  }
  // The same with the openssl command-line client.
  let out = '';
  try {
    out = execFileSync('openssl', ['s_client', '-connect', `127.0.0.1:${server.httpPort}`, '-tls1_1',
      '-cipher', 'DEFAULT@SECLEVEL=0'], { input: '', stdio: ['pipe', 'pipe', 'pipe'], timeout: EVENT_TIMEOUT }).toString();
  } catch (err) {
    out = `${err.stdout}${err.stderr}`;
  }
  assert.match(out, /alert protocol version/);
  await server.waitForLog(
    (l) => l.fields.msg === 'tls_handshake_failed' && /unsupported protocol/.test(l.fields.reason),
    EVENT_TIMEOUT, 'a tls_handshake_failed line with the reason "unsupported protocol"',
  );
});

test('TLS 1.2 without an AEAD cipher (CBC, SHA-1) is refused', async () => {
  const err = await tlsRefusal(server.httpPort, {
    ca: cert.ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA',
  });
  assert.equal(err.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', err.message);
});

test('ALPN: http/1.1 is selected; a client offering only h2 gets no_application_protocol', async () => {
  const socket = await tlsConnect(server.httpPort, { ca: cert.ca, ALPNProtocols: ['h2', 'http/1.1'] });
  assert.equal(socket.alpnProtocol, 'http/1.1');
  socket.destroy();
  const none = await tlsConnect(server.httpPort, { ca: cert.ca });
  assert.equal(none.alpnProtocol, false, 'no ALPN offered, none selected');
  none.destroy();
  const err = await tlsRefusal(server.httpPort, { ca: cert.ca, ALPNProtocols: ['h2'] });
  assert.equal(err.code, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', err.message);
});

test('a plain HTTP request on the TLS port gets a plain 400 saying so, then the connection closes', async () => {
  const conn = await RawConn.connect(server.httpPort);
  try {
    await conn.write(buildRequest({ path: '/healthz', headers: [['Host', 'localhost']] }));
    const res = await readResponse(conn);
    assert.equal(res.status, 400);
    assert.match(res.text, /HTTPS/);
    assert.equal(res.headers.connection, 'close');
    await conn.waitClosed(EVENT_TIMEOUT, 'the close after the 400');
  } finally {
    conn.destroy();
  }
});

test('a request head split across TLS records, then three pipelined requests', async (t) => {
  const conn = new RawConn(await tlsConnect(server.httpPort, { ca: cert.ca }));
  t.after(() => conn.destroy());
  const head = buildRequest({ path: '/healthz', headers: [['Host', 'localhost'], ['X-Pad', 'p'.repeat(3000)]] });
  for (const piece of [head.slice(0, 5), head.slice(5, 2000), head.slice(2000)]) await conn.write(piece); // one record each
  assert.equal((await readResponse(conn)).status, 200);
  await conn.write(head.repeat(3));
  for (let i = 0; i < 3; i++) assert.equal((await readResponse(conn)).status, 200, `pipelined response ${i + 1}`);
});

test('garbage on the TLS port is closed on without an answer', async () => {
  for (const bytes of [Buffer.from([0x00, 0xff, 0x13, 0x37]), randomBytes(512).fill(0x80, 0, 1)]) {
    const conn = await RawConn.connect(server.httpPort);
    await conn.write(bytes);
    await conn.waitClosed(EVENT_TIMEOUT, `the close after ${bytes.length} garbage bytes`);
    assert.equal(conn.pending.length, 0, 'no bytes came back');
    conn.destroy();
  }
  // A handshake record header followed by nonsense: refused (an alert at most), then closed.
  const conn = await RawConn.connect(server.httpPort);
  await conn.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40]), randomBytes(64)]));
  await conn.waitClosed(EVENT_TIMEOUT, 'the close after a broken ClientHello');
  assert.ok(conn.pending.length === 0 || conn.pending[0] === 0x15, 'nothing but an alert came back');
  conn.destroy();
});

test('/echo over wss: 1 MiB messages both ways, text and binary, and eight in a row', async (t) => {
  const client = await openWs(wssUrl('/echo'), { ca: cert.ca, perMessageDeflate: false });
  t.after(() => client.terminate());
  const binary = randomBytes(MIB);
  const echoed = await client.roundTrip(binary, { binary: true, timeoutMs: BIG_TIMEOUT });
  assert.ok(echoed.isBinary && echoed.data.equals(binary), '1 MiB binary echo differs');
  const text = 'ü'.repeat(MIB / 2);
  const echoedText = await client.roundTrip(text, { timeoutMs: BIG_TIMEOUT });
  assert.equal(echoedText.data.toString('utf8'), text);
  // Several sent without waiting: the output queue holds more than the socket takes at once.
  const sent = Array.from({ length: 8 }, (_, i) => randomBytes(MIB - i));
  await Promise.all(sent.map((m) => client.send(m, { binary: true })));
  for (const [i, m] of sent.entries()) {
    const back = await client.nextMessage(BIG_TIMEOUT, `echo ${i + 1} of 8`);
    assert.ok(back.data.equals(m), `echo ${i + 1} differs (${back.data.length} bytes)`);
  }
});

test('a certificate file with a chain: the client trusts only the root and verifies', async (t) => {
  const chain = makeChain(dir.dir);
  const chained = await startServer(['--tls-cert', chain.certFile, '--tls-key', chain.keyFile]);
  t.after(() => chained.stop());
  const res = await httpsGet(chained.httpPort, '/healthz', { ca: chain.ca });
  assert.equal(res.status, 200);
  assert.equal(chained.logLines().find((l) => l.fields.msg === 'tls_certificate').fields.chain, '1');
});

describe('the handshake deadline', () => {
  let slow;
  before(async () => {
    slow = await startServer([
      '--workers', '1', '--echo-endpoint', '--tls-handshake-timeout', '1',
      '--tls-cert', cert.certFile, '--tls-key', cert.keyFile,
    ]);
  });
  after(() => slow?.stop());

  test('50 stalled handshakes are closed at the deadline while another client is served', async (t) => {
    // A real ClientHello, cut in half.
    const hello = await captureClientHello();
    const stalled = [];
    t.after(() => stalled.forEach((c) => c.destroy()));
    for (let i = 0; i < 50; i++) {
      const conn = await RawConn.connect(slow.httpPort);
      if (i % 2) await conn.write(hello.subarray(0, hello.length >> 1));
      stalled.push(conn);
    }
    // One worker holds all 50: a client that completes its handshake is still served.
    const client = await openWs(`wss://127.0.0.1:${slow.httpPort}/echo`, { ca: cert.ca });
    const echo = await client.roundTrip('still served');
    assert.equal(echo.data.toString(), 'still served');
    client.terminate();
    await Promise.all(stalled.map((c, i) => c.waitClosed(EVENT_TIMEOUT, `stalled handshake ${i} to be closed`)));
    const health = JSON.parse((await httpsGet(slow.httpPort, '/healthz', { ca: cert.ca })).text);
    assert.ok(health.tls_handshake_failures >= 50, `tls_handshake_failures ${health.tls_handshake_failures}`);
  });
});

// The first flight of a real TLS client, captured by a TCP server that never answers.
async function captureClientHello() {
  const net = await import('node:net');
  const tls = await import('node:tls');
  const bytes = await new Promise((resolve, reject) => {
    const srv = net.createServer((sock) => {
      sock.once('data', (d) => {
        resolve(d);
        sock.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: srv.address().port, servername: 'localhost' });
      c.on('error', () => {});
      c.on('close', () => c.destroy());
    });
    srv.on('error', reject);
  });
  assert.equal(bytes[0], 0x16, 'a TLS handshake record');
  return bytes;
}

test('SIGTERM after all of the above: exit 0, nothing leaked (the ASan build reports leaks)', async () => {
  const exit = await server.stop();
  assert.equal(exit.code, 0, server.stderr());
  assert.doesNotMatch(server.stderr(), /Sanitizer|runtime error/);
});

describe('start-up refusals (exit 2 with a message)', () => {
  let data;
  before(() => {
    data = freshDataDir();
  });
  after(() => rmSync(data, { recursive: true, force: true }));
  const args = (...more) => ['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', data, ...more];
  const refused = async (what, argv, pattern) => {
    const result = await runParley(args(...argv));
    assert.equal(result.code, 2, `${what}: exit ${result.code}, stderr: ${result.stderr}`);
    assert.match(result.stderr, pattern, `${what}: stderr ${result.stderr}`);
  };

  test('a missing key file, a directory, a file with no certificate', async () => {
    await refused('missing key', ['--tls-cert', cert.certFile, '--tls-key', dir.file('nope.key')], /cannot open .*nope\.key/);
    await refused('directory as certificate', ['--tls-cert', dir.dir, '--tls-key', cert.keyFile], /not a regular file/);
    writeFileSync(dir.file('junk.pem'), 'not a certificate\n');
    await refused('junk certificate', ['--tls-cert', dir.file('junk.pem'), '--tls-key', cert.keyFile], /no PEM certificate/);
  });

  test('a key that does not match the certificate', async () => {
    const other = makeCert(dir.dir, 'other');
    await refused('mismatched key', ['--tls-cert', cert.certFile, '--tls-key', other.keyFile], /does not match/);
  });

  test('an encrypted key is refused at once (no passphrase prompt)', async () => {
    execFileSync('openssl', ['pkey', '-in', cert.keyFile, '-aes256', '-passout', 'pass:secret', '-out', dir.file('enc.key')]);
    await refused('encrypted key', ['--tls-cert', cert.certFile, '--tls-key', dir.file('enc.key')], /no usable private key/);
  });

  test('--telnet-tls without a certificate, --tls-cert without --tls-key', async () => {
    await refused('telnet-tls alone', ['--telnet-tls', '127.0.0.1:0'], /--telnet-tls needs/);
    await refused('cert alone', ['--tls-cert', cert.certFile], /--tls-cert needs --tls-key/);
    await refused('key alone', ['--tls-key', cert.keyFile], /--tls-key needs --tls-cert/);
  });
});
