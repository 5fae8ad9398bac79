// Graceful shutdown: SIGTERM closes every WebSocket with 1001 and idle connections, exits 0, stops accepting.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer } from './lib/server.mjs';
import { openWs } from './lib/wsclient.mjs';
import { RawConn } from './lib/rawconn.mjs';
import { buildRequest, readResponse } from './lib/http.mjs';
import { EVENT_TIMEOUT, ms, withTimeout } from './lib/util.mjs';

const SHUTDOWN_WAIT = ms(10000); // the server has 5 s; allow slow sanitizer builds

let server;
let clients;
let ports;
let idleHttp; // a keep-alive HTTP connection left idle after one request
let idleTelnet;

before(async () => {
  server = await startServer(['--echo-endpoint']);
  ports = { http: server.httpPort, telnet: server.telnetPort };
  const chat = await Promise.all([1, 2, 3].map(() => openWs(server.wsUrl('/ws'))));
  await Promise.all(chat.map((c) => c.nextJson(EVENT_TIMEOUT, 'hello')));
  clients = [...chat, await openWs(server.wsUrl('/echo'))];
  idleHttp = await RawConn.connect(ports.http);
  await idleHttp.write(buildRequest({ path: '/healthz', headers: [['Host', 'localhost']] }));
  await readResponse(idleHttp);
  idleTelnet = await RawConn.connect(ports.telnet);
  server.proc.kill('SIGTERM');
});

after(async () => {
  for (const c of clients ?? []) c.terminate();
  idleHttp?.destroy();
  idleTelnet?.destroy();
  await server?.kill();
});

// Resolves with the connect error code, or 'connected' if the connection was accepted.
function tryConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err) => resolve(err.code));
  });
}

test('every open WebSocket (/ws and /echo) receives close 1001', async () => {
  const closes = await Promise.all(
    clients.map((c, i) => c.waitClosed(SHUTDOWN_WAIT, `close of client ${i} after SIGTERM`)),
  );
  assert.deepEqual(
    closes.map((c) => c.code),
    clients.map(() => 1001),
  );
});

test('the process exits with status 0', async () => {
  const info = await withTimeout(server.exited, SHUTDOWN_WAIT, 'exit after SIGTERM').catch((err) => {
    throw new Error(`${err.message}\n${server.stderr()}`);
  });
  assert.deepEqual(info, { code: 0, signal: null }, server.stderr());
});

test('idle keep-alive HTTP and telnet connections are closed too', async () => {
  await idleHttp.waitClosed(SHUTDOWN_WAIT, 'the idle HTTP connection to close');
  await idleTelnet.waitClosed(SHUTDOWN_WAIT, 'the telnet connection to close');
});

test('new connections are refused after exit', async () => {
  await withTimeout(server.exited, SHUTDOWN_WAIT, 'exit after SIGTERM');
  assert.equal(await tryConnect(ports.http), 'ECONNREFUSED');
  assert.equal(await tryConnect(ports.telnet), 'ECONNREFUSED');
});
