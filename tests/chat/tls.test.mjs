// The chat over TLS: two clients over wss:// (a chat exchange, a large message, bursts, a reader
// that stops reading for a while, requests queued behind a login), telnet over --telnet-tls with
// `openssl s_client`, certificate reload on SIGHUP, the per-address limit, the TLS metrics, and
// shutdown with TLS connections open.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { Duplex } from 'node:stream';
import { startChatServer } from './lib/server.mjs';
import {
  ChatClient, EVENT_TIMEOUT, LONG_TIMEOUT, assertMessageShape, eventually, guest, ms, uniq, openRoom, uniqRoom, } from './lib/chat.mjs';
import { parseMetrics, select } from './lib/metrics.mjs';
import { TelnetClient, esc } from './lib/telnet.mjs';
import { certDir, httpsGet, makeCert, tlsConnect, tlsRefusal } from '../blackbox/lib/tls.mjs';
import { RawConn } from '../blackbox/lib/rawconn.mjs';
import { OP, encodeFrame } from '../blackbox/lib/rawws.mjs';
import { buildRequest, get, readResponse } from '../blackbox/lib/http.mjs';
import { withTimeout } from '../blackbox/lib/util.mjs';

let dir;
let cert;
let server; // one worker: a delivery and the ack of its sender leave in the same loop turn

before(async () => {
  dir = certDir();
  cert = makeCert(dir.dir);
  server = await startChatServer(
    ['--rate-limit', '0', '--workers', '1', '--output-limit', String(64 << 20), '--telnet-tls', '127.0.0.1:0'],
    { tls: cert },
  );
});

after(async () => {
  await server?.dispose();
  dir?.remove();
});

const tlsLinePort = () => Number(server.listening.telnet_tls.split(':').pop());

// A fresh room both clients joined.
async function pair(t) {
  const room = uniqRoom('tls');
  const a = await guest(server, t);
  const b = await guest(server, t);
  await a.join(room);
  await b.join(room);
  return { a, b, room };
}

test('two clients chat over wss: login, join, send, message, ack', async (t) => {
  assert.match(server.wsUrl, /^wss:/);
  const { a, b, room } = await pair(t);
  assert.equal(a.ws._socket.getProtocol(), 'TLSv1.3');
  const ack = await a.say(room, 'hello over TLS', { cid: 'c1' });
  const m = await b.nextMessage(room);
  assertMessageShape(m, { room, from: a.name, text: 'hello over TLS', seq: ack.seq, cid: 'c1' });
  const mine = await a.nextMessage(room);
  assert.equal(mine.seq, ack.seq);
  await b.say(room, 'and back');
  assert.equal((await a.nextMessage(room)).text, 'and back');
});

test('a large message and a burst of 300 small ones arrive whole and in order', async (t) => {
  const { a, b, room } = await pair(t);
  const big = '🔒'.repeat(4000); // 16 KB of UTF-8: more than one TLS record
  await a.say(room, big);
  assert.equal((await b.nextMessage(room)).text, big);
  const texts = Array.from({ length: 300 }, (_, i) => `burst ${i}`);
  const acks = await Promise.all(texts.map((text) => a.say(room, text)));
  const got = await b.messages(room, 300, LONG_TIMEOUT);
  assert.deepEqual(got.map((m) => m.text), texts);
  assert.deepEqual(got.map((m) => m.seq), acks.map((x) => x.seq));
});

test('a reader that stops reading gets everything, in order, once it reads again', async (t) => {
  const { a, b, room } = await pair(t);
  const count = 1600;
  const text = (i) => `${String(i).padStart(4, '0')} ${'x'.repeat(3990)}`;
  b.ws._socket.pause(); // b's socket buffers fill; the server queues the rest and retries its writes
  // About 6.5 MB: more than the kernel's socket buffers hold (4 MiB at most on the send side),
  // less than this server's --output-limit. With one worker, each ack leaves in the same turn as
  // b's copy, so once a has every ack all of it is queued for b or in the socket buffers.
  const acks = await a.sayMany(room, count, text);
  b.ws._socket.resume();
  const got = await b.messages(room, count, LONG_TIMEOUT);
  assert.deepEqual(got.map((m) => m.seq), acks.map((x) => x.seq));
  got.forEach((m, i) => assert.equal(m.text, text(i + 1)));
  assert.ok(b.isOpen, 'the reader was not dropped');
});

// Runs fn() while the server process is stopped (SIGSTOP), so that what fn sends is all in the
// socket when the server next reads.
async function whileStopped(t, fn) {
  const state = () => readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1][0];
  server.proc.kill('SIGSTOP');
  t.after(() => server.proc.kill('SIGCONT'));
  await eventually(() => state() === 'T', EVENT_TIMEOUT, 'the server to stop');
  try {
    await fn();
  } finally {
    server.proc.kill('SIGCONT');
  }
}

// A masked text frame of obj's JSON, padded with spaces to `pad` more bytes.
const frame = (obj, pad = 0) => encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify(obj) + ' '.repeat(pad) });

test('requests behind a login, partly decrypted inside OpenSSL, all get their answers in order', async (t) => {
  const client = await ChatClient.connect(server, { label: 'burst' });
  t.after(() => client.terminate());
  const socket = client.ws._socket;
  // First record: a login and a join, each of which holds the connection's input until its
  // answer. Then exactly 64 KiB of pings, which the client's TLS cuts into four full records.
  const held = Buffer.concat([
    frame({ type: 'login', id: 'login', name: uniq('burst') }),
    frame({ type: 'join', id: 'join', room: await openRoom(server, t, uniqRoom('burst')) }),
  ]);
  const pings = [];
  let size = 0;
  let n = 0;
  while (65536 - size >= 300) {
    pings.push(frame({ type: 'ping', id: n++ }));
    size += pings.at(-1).length;
  }
  const last = { type: 'ping', id: n++ };
  pings.push(frame(last, 65536 - size - 8 - JSON.stringify(last).length)); // 8: header and mask
  const burst = Buffer.concat(pings);
  assert.equal(burst.length, 65536);
  // Both arrive while the server is stopped, so its first read fills its 64 KiB buffer and ends
  // inside the last record: the rest of that record waits decrypted in OpenSSL with nothing left
  // in the socket, so no epoll event will come for it. It must be read once the holds end.
  await whileStopped(t, async () => {
    await new Promise((resolve, reject) => socket.write(held, (err) => (err ? reject(err) : resolve())));
    await new Promise((resolve, reject) => socket.write(burst, (err) => (err ? reject(err) : resolve())));
  });
  assert.equal((await client.next((m) => m.id === 'login', EVENT_TIMEOUT, 'welcome')).type, 'welcome');
  assert.equal((await client.next((m) => m.id === 'join', EVENT_TIMEOUT, 'joined')).type, 'joined');
  for (let i = 0; i < n; i++) {
    const pong = await client.next((m) => m.id === i, EVENT_TIMEOUT, `pong ${i} of ${n}`);
    assert.equal(pong.type, 'pong');
  }
  const order = client.log.filter((m) => m.type === 'pong').map((m) => m.id);
  assert.deepEqual(order, Array.from({ length: n }, (_, i) => i));
});

// `openssl s_client -quiet` on the TLS line port, verifying the server's certificate; its stdin
// and stdout make a stream the telnet test client reads lines from.
function sClient(t, port, extra = []) {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-quiet', '-CAfile', cert.certFile,
    '-verify_return_error', '-verify_hostname', 'localhost', ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.on('error', () => {}); // s_client may exit first
  t.after(() => child.kill('SIGKILL'));
  const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
  stream.setNoDelay = () => {};
  const client = new TelnetClient(stream, 's_client');
  client.child = child;
  client.stderr = () => stderr;
  return client;
}

test('openssl s_client on --telnet-tls: greeting, login, lines both ways with a WebSocket user', async (t) => {
  assert.equal(server.logLines().find((l) => l.fields.transport === 'telnet_tls').fields.tls, 'true');
  const watcher = await guest(server, t);
  await watcher.join('general');
  const tn = sClient(t, tlsLinePort());
  const prompt = await tn.waitPrompt(/Your name\? $/, EVENT_TIMEOUT, 'the name prompt');
  assert.match(prompt, /^Welcome to parley on .+\. Your name\? $/);
  const name = uniq('sc');
  await tn.send(name);
  await tn.nextLine(new RegExp(`^\\* ${esc(name)} joined #general \\(\\d+ online\\)`));
  await tn.send('hello from s_client');
  const m = await watcher.nextMessage('general', (x) => x.from === name);
  assert.equal(m.text, 'hello from s_client');
  await watcher.say('general', 'hello, TLS terminal');
  await tn.nextLine(`[#general] ${watcher.name}: hello, TLS terminal`);
  assert.match(tn.stderr(), /verify return:1/);
});

test('lines sent with close_notify right behind them are all handled (a scripted TLS client)', async (t) => {
  // Like `printf 'name\r\nhello\r\n' | nc`, over TLS: the login holds the input, the line
  // after it waits, and the client's close_notify must not make the server drop it.
  const watcher = await guest(server, t);
  await watcher.join('general');
  const tn = await TelnetClient.connectTls(tlsLinePort(), cert.ca, 'scripted');
  t.after(() => tn.destroy());
  const name = uniq('script');
  // Both arrive before the server reads: it decrypts the lines and the close_notify in one go.
  await whileStopped(t, () => new Promise((resolve) => tn.socket.end(`${name}\r\nsent before close_notify\r\n`, resolve)));
  const m = await watcher.nextMessage('general', (x) => x.from === name);
  assert.equal(m.text, 'sent before close_notify');
  await tn.waitClosed();
});

test('/quit on the TLS line port ends with close_notify from the server', async (t) => {
  const tn = sClient(t, tlsLinePort(), ['-msg']);
  const exited = new Promise((resolve) => tn.child.on('exit', resolve));
  let out = '';
  tn.child.stdout.on('data', (d) => (out += d));
  await tn.write(`${uniq('q')}\r\n/quit\r\n`);
  await eventually(() => /<<< TLS 1\.3, Alert \[length 0002\], warning close_notify/.test(out),
    EVENT_TIMEOUT, "the server's close_notify");
  assert.match(out, /\* Bye\./);
  tn.child.stdin.end();
  await withTimeout(exited, EVENT_TIMEOUT, 's_client to exit');
});

test('the TLS line port negotiates no ALPN, and answers plain text with one line', async (t) => {
  const tn = await TelnetClient.connectTls(tlsLinePort(), cert.ca, 'alpn', EVENT_TIMEOUT, { ALPNProtocols: ['http/1.1'] });
  t.after(() => tn.destroy());
  assert.equal(tn.socket.alpnProtocol, false);
  await tn.waitPrompt(/Your name\? $/);
  const plain = await RawConn.connect(tlsLinePort());
  t.after(() => plain.destroy());
  await plain.write('alice\r\n');
  await plain.waitClosed(EVENT_TIMEOUT, 'the close after plain text');
  assert.match(plain.pending.toString(), /^! this port speaks TLS/);
});

test('/metrics over HTTPS counts handshakes by result', async () => {
  const conn = await RawConn.connect(server.httpPort);
  await conn.write(buildRequest({ path: '/', headers: [['Host', 'x']] }));
  assert.equal((await readResponse(conn)).status, 400);
  conn.destroy();
  await tlsRefusal(server.httpPort, { ca: cert.ca, ALPNProtocols: ['h2'] });
  const res = await httpsGet(server.httpPort, '/metrics', { ca: cert.ca });
  const m = parseMetrics(res.text);
  assert.equal(m.types.parley_tls_handshakes_total, 'counter');
  assert.equal(m.types.parley_tls_connections, 'gauge');
  const count = (result) => select(m, 'parley_tls_handshakes_total', { result })[0]?.value;
  assert.ok(count('ok') >= 5, `ok ${count('ok')}`);
  assert.ok(count('not_tls') >= 1, `not_tls ${count('not_tls')}`);
  assert.ok(count('failed') >= 1, `failed ${count('failed')}`);
  assert.equal(typeof count('timeout'), 'number');
  assert.ok(select(m, 'parley_tls_connections')[0].value >= 1);
});

describe('certificate reload on SIGHUP', () => {
  let certs;
  let served; // the paths parley was given
  let reloading;
  let a;
  let b;
  before(async () => {
    certs = certDir();
    a = makeCert(certs.dir, 'a');
    b = makeCert(certs.dir, 'b');
    served = { certFile: certs.file('live.crt'), keyFile: certs.file('live.key') };
    copyFileSync(a.certFile, served.certFile);
    copyFileSync(a.keyFile, served.keyFile);
    reloading = await startChatServer(['--telnet-tls', '127.0.0.1:0'], { tls: { ...served, ca: [a.ca, b.ca] } });
  });
  after(async () => {
    await reloading?.dispose();
    certs?.remove();
  });

  const presented = async (port) => {
    const socket = await tlsConnect(port, { ca: [a.ca, b.ca] });
    const fp = socket.getPeerCertificate().fingerprint256;
    socket.destroy();
    return fp;
  };
  const reloadLines = (msg) => reloading.logLines().filter((l) => l.fields.msg === msg).length;

  test('new connections get the new certificate; an open one keeps chatting', async (t) => {
    const linePort = Number(reloading.listening.telnet_tls.split(':').pop());
    const room = uniqRoom('reload');
    const old = await guest(reloading, t);
    await old.join(room);
    assert.equal(old.ws._socket.getPeerCertificate().fingerprint256, a.fingerprint);
    copyFileSync(b.certFile, served.certFile);
    copyFileSync(b.keyFile, served.keyFile);
    reloading.proc.kill('SIGHUP');
    await reloading.waitForLog((l) => l.fields.msg === 'tls_reloaded', EVENT_TIMEOUT, 'msg=tls_reloaded');
    assert.equal(await presented(reloading.httpPort), b.fingerprint);
    assert.equal(await presented(linePort), b.fingerprint);
    const fresh = await guest(reloading, t);
    assert.equal(fresh.ws._socket.getPeerCertificate().fingerprint256, b.fingerprint);
    await fresh.join(room);
    await old.say(room, 'from the old certificate');
    assert.equal((await fresh.nextMessage(room)).text, 'from the old certificate');
    await fresh.say(room, 'from the new one');
    assert.equal((await old.nextMessage(room, (m) => m.text === 'from the new one')).text, 'from the new one');
  });

  test('a broken key or a mismatched pair: tls_reload_failed, and the last good certificate stays', async (t) => {
    const before = reloadLines('tls_reload_failed');
    writeFileSync(served.keyFile, 'garbage\n');
    reloading.proc.kill('SIGHUP');
    const failed = await reloading.waitForLog(
      (l) => l.fields.msg === 'tls_reload_failed' && /no usable private key/.test(l.fields.error),
      EVENT_TIMEOUT, 'msg=tls_reload_failed for a broken key');
    assert.equal(failed.fields.level, 'error');
    assert.equal(await presented(reloading.httpPort), b.fingerprint);
    copyFileSync(a.keyFile, served.keyFile); // a's key with b's certificate
    reloading.proc.kill('SIGHUP');
    await eventually(() => reloadLines('tls_reload_failed') === before + 2, EVENT_TIMEOUT, 'a second tls_reload_failed');
    assert.match(reloading.logLines().filter((l) => l.fields.msg === 'tls_reload_failed').at(-1).fields.error, /does not match/);
    assert.equal(await presented(reloading.httpPort), b.fingerprint);
    const c = await guest(reloading, t); // and the server still serves
    await c.sync();
    assert.ok(reloading.running);
  });

  test('after the reloads, SIGTERM: exit 0, every context freed (the ASan build reports leaks)', async () => {
    const exit = await reloading.stop();
    assert.equal(exit.code, 0, reloading.stderr());
    assert.doesNotMatch(reloading.stderr(), /Sanitizer|runtime error/);
  });
});

test('SIGHUP without TLS is logged and changes nothing', async (t) => {
  const plain = await startChatServer();
  t.after(() => plain.dispose());
  plain.proc.kill('SIGHUP');
  await plain.waitForLog((l) => l.fields.msg === 'sighup_ignored', EVENT_TIMEOUT, 'msg=sighup_ignored');
  assert.equal((await get(plain.httpPort, '/healthz')).status, 200);
  assert.ok(plain.running);
});

test('--max-conns-per-ip counts TLS connections: one over the limit is closed before its handshake', async (t) => {
  const limited = await startChatServer(['--max-conns-per-ip', '2'], { tls: cert });
  t.after(() => limited.dispose());
  const first = await ChatClient.connect(limited, { label: 'first' });
  const second = await ChatClient.connect(limited, { label: 'second' });
  t.after(() => second.terminate());
  const err = await tlsRefusal(limited.httpPort, { ca: cert.ca });
  assert.match(err.code ?? err.message, /ECONNRESET|socket disconnected|EPIPE/);
  first.terminate();
  const third = await eventually(
    () => ChatClient.connect(limited, { label: 'third' }).catch(() => null),
    EVENT_TIMEOUT, 'a connection once one of the two has gone');
  third.terminate();
});

test('SIGTERM: wss clients get 1001, a TLS telnet user its goodbye, and parley exits 0', async (t) => {
  const ending = await startChatServer(['--telnet-tls', '127.0.0.1:0'], { tls: cert });
  t.after(() => ending.dispose());
  const ws = [await guest(ending, t), await ChatClient.connect(ending, { label: 'not logged in' })];
  const linePort = Number(ending.listening.telnet_tls.split(':').pop());
  const tn = await TelnetClient.connectTls(linePort, cert.ca, 'tls telnet');
  t.after(() => tn.destroy());
  await tn.waitPrompt(/Your name\? $/);
  await tn.send(uniq('bye'));
  await tn.nextLine(/joined #general/);
  const stalled = await RawConn.connect(ending.httpPort); // a handshake that never starts
  t.after(() => stalled.destroy());
  ending.proc.kill('SIGTERM');
  const closes = await Promise.all(ws.map((c) => c.waitClosed(ms(10000))));
  assert.deepEqual(closes.map((c) => c.code), [1001, 1001]);
  await tn.nextLine(/The server is shutting down/);
  const exit = await withTimeout(ending.exited, ms(10000), 'parley to exit');
  assert.equal(exit.code, 0, ending.stderr());
  assert.doesNotMatch(ending.stderr(), /Sanitizer|runtime error/);
});
