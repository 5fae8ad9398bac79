// systemd: socket activation (Debian's systemd-socket-activate passes the listening sockets,
// unnamed or named, and parley serves them, also after upgrading to itself), and the sd_notify
// messages of a start, an upgrade and a stop, in order, on a NOTIFY_SOCKET the test listens on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { eventually, guest, ms } from '../chat/lib/chat.mjs';
import { ChatServer } from '../chat/lib/server.mjs';
import { freePorts } from '../chat/lib/cluster.mjs';
import { TelnetClient } from '../chat/lib/telnet.mjs';
import { freshDataDir, parleyBin } from '../blackbox/lib/server.mjs';
import { get } from '../blackbox/lib/http.mjs';
import { EXIT_MARGIN, Lineage, gone, notifySinkBin } from './lib/upgrade.mjs';

// parley started by systemd-socket-activate on http and telnet sockets it made; `names`: the
// --fdname it passes (undefined: none, so parley takes them in order).
async function activated(t, names, extra = []) {
  const [httpPort, telnetPort] = await freePorts(2);
  const dataDir = freshDataDir();
  const args = ['-l', `127.0.0.1:${httpPort}`, '-l', `127.0.0.1:${telnetPort}`];
  if (names) args.push(`--fdname=${names}`);
  args.push(parleyBin, '--http', '127.0.0.1:1', '--telnet', '127.0.0.1:1', '--data', dataDir, '--password-cost', 'min', ...extra);
  const child = spawn('systemd-socket-activate', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const proc = new ChatServer(child, exited, dataDir);
  const lineage = new Lineage(proc);
  t.after(() => lineage.dispose()); // every process of the line, and the data
  // systemd-socket-activate starts the program at the first connection, which waits in the
  // backlog meanwhile and is then served: ask for /healthz on what will be the HTTP port.
  await eventually(() => (proc.stderr().match(/Listening on/g) || []).length === 2, ms(10000), 'the sockets');
  const first = names === 'telnet:http' ? telnetPort : httpPort;
  const res = await get(first, '/healthz');
  assert.equal(res.status, 200);
  await proc.waitForLog((l) => l.fields.msg === 'ready', ms(15000), 'msg=ready');
  return { proc, httpPort, telnetPort, lineage };
}

for (const [label, names] of [['unnamed, in order', undefined], ['named', 'telnet:http']]) {
  test(`socket activation (${label}): parley serves the sockets it was given, binds nothing, and upgrades with them`, async (t) => {
    // Named in the other order: the names decide, not the order.
    const swap = names === 'telnet:http';
    const { proc, httpPort, telnetPort, lineage } = await activated(t, names, ['--drain-time', '0.5']);
    const [h, tn] = swap ? [telnetPort, httpPort] : [httpPort, telnetPort];
    const listening = proc.logLines().filter((l) => l.fields.msg === 'listening');
    assert.deepEqual(listening.map((l) => [l.fields.transport, l.fields.addr, l.fields.inherited]), [
      ['http', `127.0.0.1:${h}`, '1'],
      ['telnet', `127.0.0.1:${tn}`, '1'],
    ]);
    // Two workers, one socket per port: the second worker shares it (systemd's has no SO_REUSEPORT).
    const added = proc.logLines().filter((l) => l.fields.msg === 'listeners_added');
    assert.deepEqual(added.map((l) => l.fields.shared), ['true', 'true']);
    const ws = await guest(proc, t);
    await ws.join('general');
    const tc = await TelnetClient.connect(proc);
    t.after(() => tc.destroy());
    await tc.waitPrompt(/Your name\? $/);
    // An upgrade passes them on, named, as sockets of its own.
    const { oldPid, newPid } = await lineage.upgrade();
    assert.deepEqual(lineage.lines(newPid).filter((l) => l.fields.msg === 'listening').map((l) => l.fields.inherited), ['2', '2']);
    await gone(oldPid, EXIT_MARGIN);
    const again = await guest(proc, t);
    await again.join('general');
    assert.equal((await lineage.healthz()).pid, newPid);
  });
}

test('sockets passed without a name parley can place are refused with exit 2', async (t) => {
  const [a, b, c, d] = await freePorts(4);
  const dataDir = freshDataDir();
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const child = spawn('systemd-socket-activate', [
    '-l', `127.0.0.1:${a}`, '-l', `127.0.0.1:${b}`, '-l', `127.0.0.1:${c}`, '-l', `127.0.0.1:${d}`,
    parleyBin, '--data', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (x) => (stderr += x));
  await eventually(() => (stderr.match(/Listening on/g) || []).length === 4, ms(10000), 'the sockets');
  net.connect({ port: a, host: '127.0.0.1' }).on('error', () => {}); // starts parley
  const [code] = await new Promise((resolve) => child.on('exit', (...x) => resolve(x)));
  assert.equal(code, 2, stderr);
  assert.match(stderr, /4 unnamed sockets passed/);
});

// The sd_notify messages, one line each: "pid=N READY=1 MAINPID=N STATUS=...".
function notifySink(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-notify-'));
  const socketPath = path.join(dir, 'notify');
  const sink = spawn(notifySinkBin(), [socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  let partial = '';
  sink.stdout.on('data', (d) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop();
    lines.push(...parts);
  });
  t.after(() => {
    sink.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    socketPath,
    listening: eventually(() => lines[0] === 'listening', ms(5000), 'notify_sink to listen'),
    messages: () => lines.slice(1).map((l) => {
      const [, pid, rest] = /^pid=(\d+) (.*)$/.exec(l);
      const fields = Object.fromEntries(rest.split(' ').filter((x) => x.includes('=')).map((x) => x.split(/=(.*)/s).slice(0, 2)));
      return { pid: Number(pid), ...fields };
    }),
  };
}

test('sd_notify: READY at start, RELOADING at an upgrade, READY with the new MAINPID at its handover, STOPPING at the end', async (t) => {
  const sink = notifySink(t);
  await sink.listening;
  const lineage = await Lineage.start(t, ['--drain-time', '0.5'], { env: { NOTIFY_SOCKET: sink.socketPath } });
  const a = lineage.current;
  await eventually(() => sink.messages().length >= 1, ms(5000), 'READY=1');
  const { newPid: b } = await lineage.upgrade();
  await gone(a, EXIT_MARGIN);
  const { newPid: c } = await lineage.upgrade();
  await gone(b, EXIT_MARGIN);
  process.kill(c, 'SIGTERM');
  await gone(c, EXIT_MARGIN);
  const got = sink.messages().map((m) => {
    const state = ['READY', 'RELOADING', 'STOPPING'].find((k) => m[k] === '1');
    return `${state} from ${m.pid}${m.MAINPID ? ` MAINPID=${m.MAINPID}` : ''}`;
  });
  assert.deepEqual(got, [
    `READY from ${a} MAINPID=${a}`,
    `RELOADING from ${a}`,
    `READY from ${a} MAINPID=${b}`,
    `RELOADING from ${b}`,
    `READY from ${b} MAINPID=${c}`,
    `STOPPING from ${c}`,
  ]);
});

test('sd_notify: a failed upgrade ends its RELOADING with READY for the same process', async (t) => {
  const sink = notifySink(t);
  await sink.listening;
  const lineage = await Lineage.start(t, ['--upgrade-binary', '/bin/false'], { env: { NOTIFY_SOCKET: sink.socketPath } });
  const a = lineage.current;
  lineage.signal('SIGUSR2');
  await lineage.waitLog(a, 'upgrade_failed');
  await eventually(() => sink.messages().length >= 3, ms(5000), 'three messages');
  const got = sink.messages().map((m) => `${['READY', 'RELOADING'].find((k) => m[k] === '1')} ${m.MAINPID ?? ''}`);
  assert.deepEqual(got, [`READY ${a}`, 'RELOADING ', `READY ${a}`]);
});

