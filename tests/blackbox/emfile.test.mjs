// Running out of file descriptors (ulimit -n 64): no crash, no busy loop, pending connections accepted later.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from './lib/server.mjs';
import { connectWs } from './lib/wsclient.mjs';
import { ms, withTimeout } from './lib/util.mjs';

const FD_LIMIT = 64;
const ATTEMPTS = 80;
const MIN_CLOSED = 30;
const CPU_WINDOW_MS = 1500;
const MAX_CPU_SECONDS = 0.5; // per window: a server spinning on EMFILE burns a whole core
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;

let server;
const clients = [];
let closedClients = [];

// CPU seconds (user + system, all threads) used so far by process `pid`.
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

const isOpened = (c) => c.didOpen === true;
const openClients = () => clients.filter((c) => isOpened(c) && !closedClients.includes(c));
const pendingClients = () => clients.filter((c) => !isOpened(c));

// Resolves once `n` of the given clients have opened.
function whenOpened(list, n, what) {
  let count = list.filter(isOpened).length;
  const done = new Promise((resolve, reject) => {
    if (count >= n) resolve();
    for (const c of list.filter((x) => !isOpened(x))) {
      c.opened.then(
        () => ++count >= n && resolve(),
        (err) => reject(new Error(`a pending connection failed instead of opening: ${err.message}`)),
      );
    }
  });
  return withTimeout(done, ms(15000), what);
}

async function assertEchoes(list, tag) {
  await Promise.all(
    list.map(async (c, i) => {
      const text = `${tag} ${i}`;
      const msg = await c.roundTrip(text);
      assert.equal(msg.data.toString(), text);
    }),
  );
}

before(async () => {
  server = await startServer(['--workers', '1', '--echo-endpoint'], { ulimitNofile: FD_LIMIT });
  for (let i = 0; i < ATTEMPTS; i++) {
    const client = connectWs(server.wsUrl('/echo'));
    client.opened.then(() => (client.didOpen = true), () => {});
    clients.push(client);
  }
});

after(async () => {
  for (const c of clients) c.terminate();
  await server?.kill();
});

test('a warning about the fd limit is logged', async () => {
  const warning = await server.waitForLog(
    (l) => l.fields.level === 'warn' && /fd|file|descriptor|emfile|nofile|limit/i.test(l.text),
    ms(10000),
    'level=warn about the file descriptor limit',
  );
  assert.ok(warning);
});

test('connections that are open keep echoing while others wait', async (t) => {
  // With one worker, a round trip through it after the warning lets every upgrade it had
  // already accepted reach us first.
  await whenOpened(clients, 1, 'a first connection to open');
  await assertEchoes(openClients().slice(0, 1), 'settle');
  await assertEchoes(openClients(), 'while saturated');
  assert.ok(server.running, 'parley exited');
  t.diagnostic(`${openClients().length} open, ${pendingClients().length} pending`);
  assert.ok(pendingClients().length > 0, `all ${ATTEMPTS} connections opened: the limit was never hit`);
});

test('the server does not spin while connections are pending', async (t) => {
  assert.ok(pendingClients().length > 0, 'no pending connections to measure with');
  const before = cpuSeconds(server.pid);
  await sleep(CPU_WINDOW_MS); // nothing else can show the absence of a busy loop
  const used = cpuSeconds(server.pid) - before;
  t.diagnostic(`${used.toFixed(2)} s of CPU in ${CPU_WINDOW_MS} ms`);
  assert.ok(server.running, 'parley exited');
  assert.ok(used < MAX_CPU_SECONDS, `used ${used.toFixed(2)} s of CPU in ${CPU_WINDOW_MS} ms while idle`);
});

test('after closing open connections the pending ones are accepted and echo', async () => {
  const open = openClients();
  const pending = pendingClients();
  // Free at least one descriptor per pending connection (plus a margin), at least MIN_CLOSED.
  const toClose = open.slice(0, Math.min(open.length, Math.max(MIN_CLOSED, pending.length + 5)));
  closedClients = toClose;
  await Promise.all(toClose.map((c) => c.close(1000, 'make room')));
  const expected = Math.min(pending.length, toClose.length);
  await whenOpened(pending, expected, `${expected} of ${pending.length} pending connections to open`);
  assert.ok(server.running, 'parley exited');
  await assertEchoes(pending.filter(isOpened), 'after room was made');
  await assertEchoes(openClients(), 'everyone');
});

test('the server is still running and exits 0 on SIGTERM', async () => {
  assert.ok(server.running, `parley exited: ${JSON.stringify(server.exitInfo)}\n${server.stderr()}`);
  for (const c of clients) c.terminate();
  const info = await server.stop();
  assert.deepEqual(info, { code: 0, signal: null }, server.stderr());
});
