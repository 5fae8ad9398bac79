// The C load generator (bench/loadgen), a smoke run: each scenario for about a second against the
// real parley with a few hundred connections, asserting only that every message arrived exactly
// once and in order (its exit status and its RESULT line). Speed is not asserted: figures belong
// in docs/benchmarks.md. Servers that break the rules on purpose show that its checks can fail.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { WebSocketServer, WebSocket } from 'ws';
import { ParleyProcess, READY_TIMEOUT, freshDataDir, repoRoot, spawnParley, startServer } from './lib/server.mjs';
import { ms } from './lib/util.mjs';
import { ChatClient, openRoom } from '../chat/lib/chat.mjs';

const LOADGEN = path.join(repoRoot, 'build/bench/loadgen');
const CLIENTS = 300;

// Runs the generator; resolves with {code, stdout, stderr, result} (result: the RESULT line's JSON).
function loadgen(args) {
  return new Promise((resolve) => {
    execFile(LOADGEN, ['--timeout', String(ms(60000) / 1000), '--drain-timeout', String(ms(15000) / 1000), ...args],
      { timeout: ms(90000) }, (err, stdout, stderr) => {
        const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
        resolve({ code: err ? err.code : 0, signal: err?.signal, stdout, stderr, result: line ? JSON.parse(line.slice(7)) : null });
      });
  });
}

// Asserts a clean run: exit 0, every client ready, no fault of any kind.
function assertExactlyOnce(run, { traffic = true } = {}) {
  const why = `${run.stdout}\n${run.stderr}`;
  assert.equal(run.code, 0, why);
  assert.ok(run.result, `no RESULT line:\n${why}`);
  assert.equal(run.result.ok, true, why);
  assert.equal(run.result.ready, CLIENTS, why);
  for (const [fault, n] of Object.entries(run.result.faults)) assert.equal(n, fault === 'timed_out' ? false : 0, `${fault}: ${why}`);
  assert.match(run.stdout, /exactly once, in order: OK/);
  if (traffic) {
    assert.ok(run.result.sent > 0, why);
    assert.ok(run.result.deliveries >= run.result.sent, why);
  }
}

before(() => {
  execFileSync('make', ['--no-print-directory', 'loadgen'], { cwd: repoRoot, stdio: 'pipe' });
});

describe('against parley', () => {
  let server;
  let url;
  // The loadgen's clients are guests, and guests do not create rooms (protocol 1.1 rule 60): the
  // rooms they use are made first by a registered user.
  const prefix = `lgt${process.pid % 100000}r`;
  before(async () => {
    server = await startServer(['--rate-limit', '0', '--max-conns-per-ip', '0']);
    url = server.wsUrl('/ws');
    for (let i = 0; i < 15; i++) await openRoom({ wsUrl: url }, null, `${prefix}${i}`);
  });
  after(() => server?.stop());

  const common = () => ['--url', url, '-n', String(CLIENTS), '--server-pid', String(server.pid), '--split', 'random', '--room-prefix', prefix];

  test('idle: every client connects, logs in and joins one room', async () => {
    const run = await loadgen([...common(), '--scenario', 'idle', '--duration', '0.5']);
    assertExactlyOnce(run, { traffic: false });
    assert.ok(run.result.server_rss_kib.after > 0);
  });

  test('broadcast: one sender, 4 in flight, every receiver gets every message once, in order', async () => {
    const run = await loadgen([...common(), '--scenario', 'broadcast', '--messages', '300', '--inflight', '4', '--duration', '1']);
    assertExactlyOnce(run);
    assert.equal(run.result.deliveries, run.result.sent * CLIENTS);
    assert.equal(run.result.fanout_ms.count, run.result.sent);
  });

  test('all: everyone sends each round', async () => {
    const run = await loadgen([...common(), '--scenario', 'all', '--rounds', '10', '--duration', '1']);
    assertExactlyOnce(run);
    assert.equal(run.result.deliveries, run.result.sent * CLIENTS);
  });

  test('rooms: everyone talking in 15 rooms, in two worker processes', async () => {
    const run = await loadgen([...common(), '--scenario', 'rooms', '--rooms', '15', '--send-rate', '1000', '--duration', '1', '--procs', '2']);
    assertExactlyOnce(run);
    assert.equal(run.result.deliveries, run.result.sent * (CLIENTS / 15));
  });

  test('storm: everyone drops and comes back at once with a token and since, nothing lost or doubled', async () => {
    const run = await loadgen([...common(), '--scenario', 'storm', '--rooms', '15', '--send-rate', '2000', '--duration', '1', '--batch', '50']);
    assertExactlyOnce(run);
    assert.ok(run.result.storm_s > 0);
    // Replays included: every message reached each member of its room once, across the reconnect.
    assert.equal(run.result.deliveries, run.result.sent * (CLIENTS / 15));
  });

  test('storm with a lag: every client has what was sent while it read nothing replayed, and its missed acks resent', async () => {
    const run = await loadgen([...common(), '--scenario', 'storm', '--rooms', '15', '--send-rate', '300', '--duration', '0.5', '--storm-lag', '0.5', '--batch', '50']);
    assertExactlyOnce(run);
    // 300/s over 15 rooms for 0.5 s unread: 10 a room, less the pacing's rounding and the first turn.
    assert.ok(run.result.replay_min >= 5, `replay_min ${run.result.replay_min}`);
    assert.ok(run.result.resent > 0, 'the sends made during the lag were never acked to their senders');
    assert.equal(run.result.deliveries, run.result.sent * (CLIENTS / 15));
  });

  test('storm with a restart: parley killed in the lag and started again on its port and data; every client back, nothing lost or doubled', async () => {
    const dataDir = freshDataDir();
    const startOn = async (http) => {
      const { child, exited } = spawnParley(['--http', http, '--telnet', '127.0.0.1:0', '--data', dataDir, '--rate-limit', '0', '--max-conns-per-ip', '0']);
      const p = new ParleyProcess(child, exited, dataDir);
      await p.waitForLog((l) => l.fields.msg === 'ready', READY_TIMEOUT, 'msg=ready');
      return p;
    };
    let p = await startOn('127.0.0.1:0');
    try {
      const port = p.httpPort;
      const wsUrl = `ws://127.0.0.1:${port}/ws`;
      const rooms = `${prefix}x`;
      for (let i = 0; i < 3; i++) await openRoom({ wsUrl }, null, `${rooms}${i}`);
      let restarted = null;
      const run = await new Promise((resolve) => {
        const child = spawn(LOADGEN, ['--timeout', String(ms(60000) / 1000), '--drain-timeout', String(ms(15000) / 1000), '--url', wsUrl,
          '-n', String(CLIENTS), '--room-prefix', rooms, '--scenario', 'storm', '--rooms', '3', '--send-rate', '300', '--duration', '0.5',
          '--storm-lag', '1', '--storm-restart', '--batch', '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => {
          stdout += d;
          if (!restarted && stdout.includes('STORM-LAG')) {
            // Half way into the lag: what was sent before is stored and unread, what comes after is lost with the process.
            restarted = (async () => {
              await new Promise((r) => setTimeout(r, 500));
              await p.kill();
              p = await startOn(`127.0.0.1:${port}`);
            })();
          }
        });
        child.stderr.on('data', (d) => (stderr += d));
        child.on('exit', async (code) => {
          await restarted;
          const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
          resolve({ code, stdout, stderr, result: line ? JSON.parse(line.slice(7)) : null });
        });
      });
      assert.ok(restarted, `no STORM-LAG cue:\n${run.stdout}`);
      assertExactlyOnce(run);
      assert.ok(run.result.replay_min >= 1, `replay_min ${run.result.replay_min}`);
      // Every message reached each member of its room once: those the old process lost were sent again.
      assert.equal(run.result.deliveries, run.result.sent * (CLIENTS / 3));
    } finally {
      await p.kill();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a name that is taken is a failed connection and a failing exit', async () => {
    // A guest holds "dup0"; a run that asks for the same name gets name_taken.
    const holder = await ChatClient.connect({ wsUrl: url }, { label: 'dup0 holder' });
    try {
      await holder.login('dup0');
      const second = await loadgen(['--url', url, '-n', '1', '--scenario', 'idle', '--duration', '0.1', '--name-prefix', 'dup', '--room-prefix', prefix]);
      assert.equal(second.code, 1, second.stdout);
      assert.equal(second.result.ok, false);
      assert.equal(second.result.faults.connect_failed, 1);
      assert.equal(second.result.faults.server_errors, 1);
      assert.match(second.result.problem, /name_taken/);
    } finally {
      holder.terminate();
    }
  });
});

// A relay (text in, text to all) that, as told, breaks the rules for one receiver or sends every
// message in fragments, or (`lines`) joins messages two by two into one text with '\n' between
// them, as Go's chat example joins what is queued for a connection (`lines-drop`: and leaves one
// out of a joined text for one receiver).
function faultyRelay(fault) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  let count = 0;
  let held = null;
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      count += 1;
      const victim = [...wss.clients].at(-1);
      if (fault.startsWith('lines')) {
        if (count % 2 === 1) {
          held = data;
          return;
        }
        for (const client of wss.clients) {
          if (client.readyState !== WebSocket.OPEN) continue;
          const dropOne = fault === 'lines-drop' && client === victim && count === 6;
          client.send(dropOne ? data : Buffer.concat([held, Buffer.from('\n'), data]), { binary: false });
        }
        return;
      }
      for (const client of wss.clients) {
        if (client.readyState !== WebSocket.OPEN) continue;
        if (fault === 'fragment') {
          // Every message in three frames with a ping between the first two (RFC 6455 5.4, 5.5).
          const cut1 = Math.floor(data.length / 3);
          const cut2 = Math.floor((2 * data.length) / 3);
          client.send(data.subarray(0, cut1), { fin: false });
          client.ping(Buffer.from('p'));
          client.send(data.subarray(cut1, cut2), { fin: false });
          client.send(data.subarray(cut2), { fin: true });
          continue;
        }
        if (client === victim && count === 5) {
          if (fault === 'drop') continue;
          if (fault === 'duplicate') client.send(data);
          if (fault === 'reorder') {
            held = data;
            continue;
          }
          if (fault === 'close') {
            client.terminate();
            continue;
          }
        }
        client.send(data);
        if (client === victim && count === 6 && held) client.send(held);
      }
    });
  });
  return new Promise((resolve) => wss.on('listening', () => resolve(wss)));
}

test('a relay that sends every message in fragments with pings between them: a clean run', async () => {
  const wss = await faultyRelay('fragment');
  let pongs = 0;
  wss.on('connection', (ws) => ws.on('pong', () => (pongs += 1)));
  try {
    const run = await loadgen(['--url', `ws://127.0.0.1:${wss.address().port}/`, '--protocol', 'relay', '-n', '20',
      '--scenario', 'broadcast', '--messages', '20', '--inflight', '5', '--duration', '5']);
    assert.equal(run.code, 0, run.stdout);
    assert.equal(run.result.deliveries, 20 * 20);
    assert.ok(pongs > 0, 'the pings were answered');
  } finally {
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
});

test('--relay-lines: a relay that joins messages with newlines into one text: each line is a message, a clean run', async () => {
  const wss = await faultyRelay('lines');
  try {
    const run = await loadgen(['--url', `ws://127.0.0.1:${wss.address().port}/`, '--protocol', 'relay', '--relay-lines',
      '-n', '20', '--scenario', 'broadcast', '--messages', '20', '--inflight', '20', '--duration', '5']);
    assert.equal(run.code, 0, run.stdout);
    assert.equal(run.result.deliveries, 20 * 20);
  } finally {
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
});

describe('its checks fail when the server breaks the rules', () => {
  test('a relay that joins messages with newlines, read without --relay-lines: exit 1, unreadable, and the summary says to use it', async () => {
    const wss = await faultyRelay('lines');
    try {
      const run = await loadgen(['--url', `ws://127.0.0.1:${wss.address().port}/`, '--protocol', 'relay', '-n', '20',
        '--scenario', 'broadcast', '--messages', '20', '--inflight', '20', '--duration', '1', '--drain-timeout', '1']);
      assert.equal(run.code, 1, run.stdout);
      assert.ok(run.result.faults.bad_frames >= 1, JSON.stringify(run.result.faults));
      assert.match(run.result.problem, /--relay-lines/);
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
    }
  });

  test('--relay-lines: a relay that leaves a message out of a joined text for one receiver: exit 1, and the summary says lost', async () => {
    const wss = await faultyRelay('lines-drop');
    try {
      const run = await loadgen(['--url', `ws://127.0.0.1:${wss.address().port}/`, '--protocol', 'relay', '--relay-lines',
        '-n', '20', '--scenario', 'broadcast', '--messages', '20', '--inflight', '20', '--duration', '1', '--drain-timeout', '1']);
      assert.equal(run.code, 1, run.stdout);
      assert.ok(run.result.faults.lost >= 1, JSON.stringify(run.result.faults));
      assert.match(run.stdout, /FAILED/);
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
    }
  });

  for (const [fault, what, field] of [
    ['drop', 'drops a message', 'lost'],
    ['duplicate', 'sends a message twice', 'duplicated'],
    ['reorder', 'swaps two messages', 'reordered'],
    ['close', 'drops a connection', 'unexpected_close'],
  ]) {
    test(`a relay that ${what} to one receiver: exit 1, and the summary says ${field}`, async () => {
      const wss = await faultyRelay(fault);
      try {
        const run = await loadgen(['--url', `ws://127.0.0.1:${wss.address().port}/`, '--protocol', 'relay', '-n', '20',
          '--scenario', 'broadcast', '--messages', '20', '--inflight', '20', '--duration', '1', '--drain-timeout', '1']);
        assert.equal(run.code, 1, run.stdout);
        assert.equal(run.result.ok, false);
        assert.ok(run.result.faults[field] >= 1, `${field} in ${JSON.stringify(run.result.faults)}`);
        assert.match(run.stdout, /FAILED/);
      } finally {
        for (const c of wss.clients) c.terminate();
        wss.close();
      }
    });
  }

  // A fake parley (hello, guest login, join, send -> ack + message) that breaks the seq rules for
  // one member: `skip` leaves a hole in the seq, `double` stores a message twice (a new seq for
  // the same sender's message, which only the per-sender count can see), `room` sends it a message
  // of a room it is not in.
  function fakeParley(fault) {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    const members = new Set();
    let seq = 0;
    wss.on('connection', (ws) => {
      ws.send(JSON.stringify({ type: 'hello', server: 'fake', protocol: 1 }));
      ws.on('close', () => members.delete(ws));
      ws.on('message', (data) => {
        const m = JSON.parse(data);
        if (m.type === 'login') ws.send(JSON.stringify({ type: 'welcome', id: m.id, name: m.name, guest: true, token: 't', dms: [] }));
        if (m.type === 'join') {
          members.add(ws);
          ws.send(JSON.stringify({ type: 'joined', id: m.id, room: m.room, seq, members: [], truncated: false }));
        }
        if (m.type !== 'send') return;
        const copies = fault === 'double' && seq === 4 ? 2 : 1;
        for (let i = 0; i < copies; i++) {
          seq += 1;
          ws.send(JSON.stringify({ type: 'ack', id: m.id, room: m.room, seq }));
          const event = JSON.stringify({ type: 'message', room: m.room, seq, ts: 0, from: 'x', text: m.text });
          const victim = [...members].at(-1);
          for (const member of members) {
            if (fault === 'skip' && seq === 5 && member === victim) continue;
            if (fault === 'room' && seq === 5 && member === victim) {
              member.send(JSON.stringify({ type: 'message', room: 'elsewhere', seq, ts: 0, from: 'x', text: m.text }));
              continue;
            }
            member.send(event);
          }
        }
      });
    });
    return new Promise((resolve) => wss.on('listening', () => resolve(wss)));
  }

  for (const [fault, what, field] of [
    ['skip', 'skips a seq for one member', 'lost'],
    ['double', 'stores a message twice', 'duplicated'],
    ['room', 'sends a member a message of another room', 'wrong_room'],
  ]) {
    test(`a parley that ${what}: exit 1, and the summary says ${field}`, async () => {
      const wss = await fakeParley(fault);
      try {
        const run = await loadgen(['--url', `ws://127.0.0.1:${wss.address().port}/ws`, '-n', '20', '--scenario', 'broadcast',
          '--messages', '20', '--inflight', '20', '--duration', '1', '--drain-timeout', '1']);
        assert.equal(run.code, 1, run.stdout);
        assert.ok(run.result.faults[field] >= 1, `${field} in ${JSON.stringify(run.result.faults)}`);
        assert.match(run.stdout, /FAILED/);
      } finally {
        for (const c of wss.clients) c.terminate();
        wss.close();
      }
    });
  }
});

test('a bad command line exits 2 and says why; no address off loopback is accepted', async () => {
  for (const [args, pattern] of [
    [['--url', 'ws://10.0.0.1:80/ws'], /127\.0\.0\.0\/8/],
    [['--url', 'ws://example.com:80/ws'], /127\.0\.0\.0\/8/],
    [['--source', '10.0.0.1-10.0.0.5'], /loopback/],
    [['--scenario', 'storm', '--protocol', 'relay'], /parley's only/],
    [['--clients', '0'], /--clients/],
    [['--relay-lines'], /--relay-lines is for --protocol relay/],
    [['--scenario', 'rooms', '--storm-lag', '1'], /--storm-lag is for the storm/],
    [['--scenario', 'storm', '--storm-restart'], /--storm-restart needs --storm-lag/],
  ]) {
    const run = await loadgen(args);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, pattern);
  }
});
