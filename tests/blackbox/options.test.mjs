// Command line: --version, --help, bad options and values (exit 2), ports in use (exit 2), IPv6 listen address.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { freshDataDir, runParley, startServer } from './lib/server.mjs';
import { buildRequest, get, readResponse } from './lib/http.mjs';
import { RawConn } from './lib/rawconn.mjs';

let dataDir;

before(() => {
  dataDir = freshDataDir();
});

after(() => rmSync(dataDir, { recursive: true, force: true }));

// Safe listen addresses, so a binary that wrongly starts does not take the default ports.
const safeArgs = () => ['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', dataDir];

function assertUsageError(result, what) {
  assert.equal(result.code, 2, `${what}: exit ${result.code} (signal ${result.signal}), stderr: ${result.stderr}`);
  assert.ok(result.stderr.trim().length > 0, `${what}: no message on stderr`);
}

test('--version prints "parley <version>" and exits 0', async () => {
  const result = await runParley(['--version']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout.trim(), /^parley \d+\.\d+\.\d+$/);
});

test('--help prints usage naming the options and exits 0', async () => {
  const result = await runParley(['--help']);
  assert.equal(result.code, 0, result.stderr);
  for (const option of ['--http', '--telnet', '--data', '--echo-endpoint', '--max-message', '--tls-cert',
    '--tls-key', '--telnet-tls', '--tls-handshake-timeout', '--deflate', '--deflate-threshold',
    '--upgrade-binary', '--upgrade-timeout', '--upgrade-mode', '--drain-time', '--presence-limit',
    '--telnet-queue', '--admin', '--max-total-rooms', '--max-topic', '--max-reason', '--max-duration',
    '--broker', '--node-lease', '--node']) {
    assert.ok(result.stdout.includes(option), `--help does not mention ${option}`);
  }
});

test('an unknown option → exit 2 with a message', async () => {
  assertUsageError(await runParley([...safeArgs(), '--no-such-option']), '--no-such-option');
});

for (const args of [
  ['--workers', 'abc'],
  ['--workers'],
  ['--http', 'nonsense'],
  ['--http', '127.0.0.1:99999'],
  ['--telnet', '127.0.0.1:-1'],
  ['--max-message', 'abc'],
  ['--ping-interval', 'soon'],
  ['--idle-timeout', '-1'],
  ['--log-level', 'loud'],
  // TLS (tests/blackbox/tls.test.mjs covers the certificate files themselves)
  ['--tls-cert', '/nonexistent.pem'],
  ['--tls-key', '/nonexistent.pem'],
  ['--telnet-tls', '127.0.0.1:0'],
  ['--telnet-tls', 'nonsense'],
  ['--tls-handshake-timeout', '0'],
  ['--tls-handshake-timeout', 'soon'],
  ['--deflate', 'maybe'],
  ['--deflate'],
  ['--deflate-threshold', '-1'],
  ['--deflate-threshold', 'abc'],
  ['--deflate-threshold', '2147483648'],
  // upgrades (tests/upgrade covers them in use)
  ['--upgrade-binary', ''],
  ['--upgrade-timeout', '0'],
  ['--upgrade-mode', 'hot'],
  ['--upgrade-mode', 'Live'],
  ['--drain-time', 'soon'],
  // large rooms (tests/chat/large_rooms.test.mjs covers them in use)
  ['--presence-limit', '-1'],
  ['--presence-limit', 'many'],
  ['--presence-limit', '10000001'],
  ['--presence-limit'],
  // search (tests/chat/search.test.mjs covers them in use)
  ['--search-rate', '-1'],
  ['--search-rate', 'often'],
  ['--search-rate', '1000001'],
  ['--search-scan', '0'],
  ['--search-scan', 'all'],
  ['--search-scan', '100000001'],
  ['--search-scan'],
  // several nodes (tests/unit/test_broker_redis.c covers the broker in use, tests/nodes the store)
  ['--store', 'mysql://db/parley'],
  ['--store', 'parley.db'],
  ['--store'],
  ['--broker', 'localhost:6379'],
  ['--broker', 'redis://'],
  ['--broker', 'redis://host:0'],
  ['--broker', 'redis://user:secret@host:6379'],
  ['--broker', 'redis://host:6379/x'],
  ['--broker'],
  ['--node-lease', '0'],
  ['--node-lease', 'soon'],
  // telnet waiting lines (tests/chat/telnet_queue.test.mjs covers them in use)
  ['--telnet-queue', '-1'],
  ['--telnet-queue', 'lots'],
  ['--telnet-queue', '1001'],
  ['--telnet-queue'],
  // topic, roles, moderation (tests/chat/topic_roles.test.mjs and moderation.test.mjs cover them)
  ['--admin', 'not a name'],
  ['--admin'],
  ['--max-total-rooms', '-1'],
  ['--max-total-rooms', 'many'],
  ['--max-topic', '0'],
  ['--max-topic', '4001'],
  ['--max-reason', '0'],
  ['--max-duration', '0'],
  ['--max-duration', 'forever'],
]) {
  test(`bad value: ${args.join(' ')} → exit 2 with a message`, async () => {
    // Appended last so that it overrides the safe defaults where it names the same option.
    assertUsageError(await runParley([...safeArgs(), ...args]), args.join(' '));
  });
}

test('--store with no PostgreSQL to reach → exit 2 naming why; an SQLite-only option beside it is named as ignored', async () => {
  const result = await runParley([...safeArgs(), '--store', 'postgresql:///parley?host=/nonexistent-dir', '--sync', 'full']);
  assert.equal(result.code, 2, `exit ${result.code} (signal ${result.signal}), stderr: ${result.stderr}`);
  assert.match(result.stderr, /msg=store_open_failed backend=postgres error=".*nonexistent-dir/);
  assert.match(result.stderr, /level=warn .*msg=option_ignored option=--sync /);
});

// A TCP listener on a free loopback port, closed by the test.
async function occupyPort(t) {
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  return blocker.address().port;
}

for (const transport of ['http', 'telnet']) {
  test(`--${transport} on a port in use → exit 2 with a message`, async (t) => {
    const port = await occupyPort(t);
    const args = [...safeArgs(), `--${transport}`, `127.0.0.1:${port}`];
    assertUsageError(await runParley(args), `--${transport} on busy port ${port}`);
  });
}

test('--http [::1]:0 listens on IPv6 loopback', async (t) => {
  const server = await startServer([], { http: '[::1]:0' });
  t.after(() => server.stop());
  const conn = await RawConn.connect(server.httpPort, { host: '::1' });
  t.after(() => conn.destroy());
  await conn.write(buildRequest({ path: '/healthz', headers: [['Host', `[::1]:${server.httpPort}`]] }));
  const res = await readResponse(conn);
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.text).status, 'ok');
});

test('--node, --workers and --log-level debug are accepted', async (t) => {
  const server = await startServer(['--node', 'n1', '--workers', '1', '--log-level', 'debug']);
  t.after(() => server.stop());
  assert.equal((await get(server.httpPort, '/healthz')).status, 200);
});

// Password checks and login throttling.
for (const args of [
  ['--auth-threads', '0'],
  ['--auth-threads', '65'],
  ['--login-fails-address', '-1'],
  ['--login-delay-address', '0'],
  ['--login-fails-account', 'many'],
  ['--login-delay-account', 'soon'],
  ['--login-trust', '-5'],
  ['--auth-queue-address', '0'],
  ['--throttle-entries', '10'],
]) {
  test(`bad value: ${args.join(' ')} → exit 2 with a message`, async () => {
    assertUsageError(await runParley([...safeArgs(), ...args]), args.join(' '));
  });
}

test('--help names the login throttling options, and they are accepted', async (t) => {
  const options = [
    ['--auth-threads', '3'],
    ['--login-fails-address', '0'],
    ['--login-delay-address', '1.5'],
    ['--login-fails-account', '20'],
    ['--login-delay-account', '600'],
    ['--login-trust', '86400'],
    ['--auth-queue-address', '8'],
    ['--throttle-entries', '1024'],
  ];
  const help = await runParley(['--help']);
  for (const [option] of options) assert.ok(help.stdout.includes(option), `--help does not mention ${option}`);
  const server = await startServer(options.flat());
  t.after(() => server.stop());
  assert.equal((await get(server.httpPort, '/healthz')).status, 200);
  assert.ok(server.logLines().some((l) => l.fields.msg === 'auth_ready' && l.fields.threads === '3'));
});
