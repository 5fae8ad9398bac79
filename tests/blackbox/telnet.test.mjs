// Telnet listener sanity: a TCP connection to the telnet port is accepted and greeted with some bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { RawConn } from './lib/rawconn.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(() => server?.stop());

test('connecting to the telnet port gets greeting bytes', async (t) => {
  const conn = await RawConn.connect(server.telnetPort);
  t.after(() => conn.destroy());
  const greeting = await conn.take(
    (buf) => (buf.length > 0 ? { value: Buffer.from(buf), used: buf.length } : null),
    undefined,
    'greeting bytes on the telnet port',
  );
  assert.ok(greeting.length > 0);
});
