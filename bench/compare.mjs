// compare: the load generator's table (docs/benchmarks.md, "parley beside its peers"): the same
// scenarios of the C load generator (bench/loadgen) against parley, the Node `ws` relay
// (bench/peers/relay_server.mjs) and the Go chat peer (bench/peers/gorilla_chat), one after the
// other in one run, each run on a fresh server process, and parley's figures as ratios to each
// peer's. Writes the table between the loadgen-table markers of docs/benchmarks.md.
//   node bench/compare.mjs               (`make bench` runs it)
//   BENCH_QUICK=1 node bench/compare.mjs small N, for development: writes build/bench/loadgen-table.md
//                                         only, never the docs
// Any failure (a server that does not build or start, a run with a lost, doubled or reordered
// message, a closed connection, no result) is printed and ends it with exit 1, the docs untouched:
// a peer is never left out of the table silently.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killAndWait, root, start, startParley } from './lib.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const LOADGEN = path.join(root, 'build/bench/loadgen');
const GORILLA = path.join(root, 'build/bench/gorilla_chat');
const DOC = path.join(root, 'docs/benchmarks.md');
const BEGIN = '<!-- loadgen-table:begin -->';
const END = '<!-- loadgen-table:end -->';

// The scale: full (make bench, about 10 minutes here) or quick.
const idleSizes = QUICK ? [500, 1000, 1500] : [5000, 10000, 15000];
const broadcasts = QUICK
  ? [{ n: 1000, messages: 100 }, { n: 500, messages: 100 }]
  : [{ n: 10000, messages: 300 }, { n: 5000, messages: 500 }];
const allToAll = { n: 100, rounds: QUICK ? 20 : 100 };
// The reconnect storm (parley only: the peers have no login, rooms or replay): the largest set-up's
// clients in one room, 3 messages a second from them all (45,000 deliveries a second at 15,000,
// a fifth of a core here: the storm, not the traffic, is what is measured); for the last 2 s before
// the drop they read nothing, so every client has at least the 6 messages sent meanwhile to
// replay and acks it missed, sent again with the same cid once back.
const storm = { n: idleSizes[idleSizes.length - 1], rate: 3, before: 3, lag: 2 };
// And once more with a real restart: 1.5 s into the lag parley is killed (SIGKILL) and started
// again on the same port and data, so the clients come back to a new process: its room small
// until its first tick, its replays read from SQLite. What was sent in the last 0.5 s of the lag
// never reached the old process; it is sent again with its cid once back.
const restartAfterMs = 1500;
// One generator process holds at most 10,000 clients: the file limit is 20,000 per process here,
// and with two processes the two cores share the reading of a big room's traffic.
const procs = (n) => Math.ceil(n / 10000);

function fail(message) {
  console.error(`\nbench/compare: FAILED: ${message}`);
  process.exit(1);
}

try {
  execFileSync('make', ['--no-print-directory', 'all', 'loadgen', 'peers'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
} catch {
  fail('make all loadgen peers did not build parley, the load generator and the Go peer (see above)');
}

// Resolves like start(), or rejects when the server has not said it listens within 15 s (and
// kills it should it say so later).
function startWithin(what, starter) {
  let timer;
  let late = false;
  const starting = starter();
  starting.then((s) => late && s.proc.kill('SIGKILL'), () => {});
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      reject(new Error(`${what} did not start within 15 s`));
    }, 15000);
  });
  return Promise.race([starting, timeout]).finally(() => clearTimeout(timer));
}

// The servers: how to start each fresh, its WebSocket path and the generator's protocol options.
const servers = [
  {
    key: 'parley',
    name: 'parley',
    command: 'build/release/parley --http 127.0.0.1:0 --telnet 127.0.0.1:0 --data DIR --rate-limit 0 --max-conns-per-ip 0',
    // Every scenario here uses one room; the generator's guests do not create it (rule 60).
    start: () => startParley({ rooms: ['cmp0'] }),
    wsPath: '/ws',
    args: ['--room-prefix', 'cmp'],
  },
  {
    key: 'relay',
    name: 'Node ws relay',
    command: 'node bench/peers/relay_server.mjs',
    start: () => start(process.execPath, [path.join(root, 'bench/peers/relay_server.mjs')], /port=(\d+)/),
    wsPath: '/',
    args: ['--protocol', 'relay'],
  },
  {
    key: 'gorilla',
    name: 'gorilla chat (Go)',
    command: 'build/bench/gorilla_chat',
    start: () => start(GORILLA, [], /port=(\d+)/),
    wsPath: '/ws',
    args: ['--protocol', 'relay', '--relay-lines'],
  },
];

// Runs one scenario against a fresh `server`; resolves with the RESULT line's JSON, or fails.
async function run(server, args) {
  let s;
  try {
    s = await startWithin(server.name, server.start);
  } catch (e) {
    fail(`${server.name} (${server.command}) did not start: ${e.message}`);
  }
  const full = [...args, '--url', `ws://127.0.0.1:${s.port}${server.wsPath}`, '--server-pid', String(s.proc.pid), ...server.args];
  console.log(`\n== ${server.name}: loadgen ${full.join(' ')}`);
  const result = await new Promise((resolve) => {
    const child = spawn(LOADGEN, full, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      console.log(out.split('\n').filter((l) => !l.startsWith('RESULT ') && l).join('\n'));
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      resolve(line ? { ...JSON.parse(line.slice(7)), exit: code } : { ok: false, exit: code, problem: 'no RESULT line' });
    });
  });
  s.proc.kill('SIGKILL');
  if (!result.ok || result.exit !== 0) {
    fail(`${server.name}: loadgen ${full.join(' ')}: exit ${result.exit}: ${JSON.stringify(result.faults ?? {})} ${result.problem ?? ''}`);
  }
  return result;
}

// The storm with a restart (parley only): as run(), but the server is killed on the generator's
// STORM-LAG cue (after restartAfterMs) and started again on its port and data; resolves with the
// RESULT, and the new process's CPU time until the end in server_cpu_restarted_s.
async function runRestart(args) {
  const server = servers[0];
  let s;
  try {
    s = await startWithin(server.name, server.start);
  } catch (e) {
    fail(`${server.name} (${server.command}) did not start: ${e.message}`);
  }
  const { port, data } = s;
  const full = [...args, '--url', `ws://127.0.0.1:${port}${server.wsPath}`, '--server-pid', String(s.proc.pid), ...server.args];
  console.log(`\n== ${server.name}, restarted in the lag: loadgen ${full.join(' ')}`);
  let restarting = null;
  const restart = async () => {
    await new Promise((r) => setTimeout(r, restartAfterMs));
    await killAndWait(s.proc);
    try {
      s = await startWithin(server.name, () => startParley({ port, data }));
    } catch (e) {
      fail(`${server.name} did not start again on port ${port}: ${e.message}`);
    }
  };
  const result = await new Promise((resolve) => {
    const child = spawn(LOADGEN, full, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (!restarting && out.includes('STORM-LAG')) restarting = restart();
    });
    child.on('exit', async (code) => {
      await restarting;
      console.log(out.split('\n').filter((l) => !l.startsWith('RESULT ') && l).join('\n'));
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      resolve(line ? { ...JSON.parse(line.slice(7)), exit: code } : { ok: false, exit: code, problem: 'no RESULT line' });
    });
  });
  const stat = readFileSync(`/proc/${s.proc.pid}/stat`, 'utf8');
  const [utime, stime] = stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(11, 13).map(Number);
  result.server_cpu_restarted_s = (utime + stime) / 100; // USER_HZ
  s.proc.kill('SIGKILL');
  if (!restarting) fail('the generator never gave the STORM-LAG cue');
  if (!result.ok || result.exit !== 0) {
    fail(`${server.name} restarted: loadgen ${full.join(' ')}: exit ${result.exit}: ${JSON.stringify(result.faults ?? {})} ${result.problem ?? ''}`);
  }
  return result;
}

// Every scenario against every server, the servers taking turns so that noise hits all alike.
const plan = [
  ...idleSizes.map((n) => ({ id: `idle${n}`, args: ['--scenario', 'idle', '-n', String(n), '--procs', String(procs(n)), '--duration', '2'] })),
  {
    id: 'storm',
    only: 'parley',
    args: ['--scenario', 'storm', '-n', String(storm.n), '--procs', String(procs(storm.n)), '--rooms', '1', '--send-rate', String(storm.rate),
      '--duration', String(storm.before), '--storm-lag', String(storm.lag)],
  },
  {
    id: 'restart',
    only: 'parley',
    restart: true,
    args: ['--scenario', 'storm', '-n', String(storm.n), '--procs', String(procs(storm.n)), '--rooms', '1', '--send-rate', String(storm.rate),
      '--duration', String(storm.before), '--storm-lag', String(storm.lag), '--storm-restart'],
  },
  ...broadcasts.map(({ n, messages }) => ({
    id: `broadcast${n}`,
    args: ['--scenario', 'broadcast', '-n', String(n), '--procs', String(procs(n)), '--messages', String(messages), '--inflight', '4', '--duration', '120'],
  })),
  { id: 'all', args: ['--scenario', 'all', '-n', String(allToAll.n), '--rounds', String(allToAll.rounds)] },
];
const started = new Date();
const load = os.loadavg()[0];
const results = {};
for (const step of plan) {
  results[step.id] = {};
  for (const server of servers) {
    if (step.only && step.only !== server.key) continue;
    results[step.id][server.key] = step.restart ? await runRestart(step.args) : await run(server, step.args);
  }
}

// The table: one row per figure, parley and each peer, and parley's ratio to each.
const num = (x, d) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const units = {
  s: (x) => `${num(x, x < 10 ? 2 : 1)} s`,
  bytes: (x) => `${num(x, 0)} B`,
  ms: (x) => `${num(x, x < 10 ? 2 : 1)} ms`,
};
const rows = [];
for (const n of idleSizes) {
  const r = results[`idle${n}`];
  rows.push([`${num(n, 0)} clients log in and join ONE room (peers: connect only): all ready`, r, (x) => x.setup_s, units.s]);
  rows.push([`server RSS per idle client, ${num(n, 0)} in one room`, r, (x) => x.rss_bytes_per_client, units.bytes]);
  rows.push([`server CPU during that set-up, ${num(n, 0)}`, r, (x) => x.server_cpu_setup_s, units.s]);
}
{
  // Issue 9's bound for the storm is the peers' plain connect of as many clients, in this run.
  const connect = results[`idle${storm.n}`];
  const r = { parley: results.storm.parley, relay: connect.relay, gorilla: connect.gorilla };
  const what = `${num(storm.n, 0)} clients reconnect at once with since (${storm.rate} messages/s, each with at least ${storm.rate * storm.lag} to replay)`;
  rows.push([`${what}: all back and replayed (peers: their ${num(storm.n, 0)} connects above)`, r,
    (x) => x.storm_s ?? x.setup_s, units.s]);
  rows.push([`server CPU from the drop to all back, ${num(storm.n, 0)} (peers: during their connects)`, r,
    (x) => x.server_cpu_storm_s ?? x.server_cpu_setup_s, units.s]);
  if (r.parley.replay_min < storm.rate * storm.lag) fail(`the storm left a client with only ${r.parley.replay_min} messages replayed`);
  const rr = { parley: results.restart.parley, relay: connect.relay, gorilla: connect.gorilla };
  rows.push([`the same after a restart (parley killed 1.5 s into the lag, started again on its data): all back and replayed`, rr,
    (x) => x.storm_s ?? x.setup_s, units.s]);
  rows.push([`server CPU of the restarted process, from its start to the end of the run (peers: during their connects)`, rr,
    (x) => x.server_cpu_restarted_s ?? x.server_cpu_setup_s, units.s]);
  if (rr.parley.replay_min < 1) fail('the storm after a restart left a client with nothing replayed');
}
for (const { n, messages } of broadcasts) {
  const r = results[`broadcast${n}`];
  const what = `broadcast to ${num(n, 0)}, 4 in flight (${messages} messages)`;
  rows.push([`server CPU per 1000 deliveries, ${what}`, r, (x) => x.server_cpu_ms_per_1000, units.ms]);
  rows.push([`fan-out completion p50, ${what}`, r, (x) => x.fanout_ms.p50, units.ms]);
  rows.push([`fan-out completion p99, ${what}`, r, (x) => x.fanout_ms.p99, units.ms]);
}
{
  const r = results.all;
  rows.push([`all-to-all round, ${allToAll.n} clients: p50`, r, (x) => x.round_ms.p50, units.ms]);
  rows.push([`all-to-all round, ${allToAll.n} clients: p99`, r, (x) => x.round_ms.p99, units.ms]);
  rows.push([`server CPU per 1000 deliveries, all-to-all ${allToAll.n}`, r, (x) => x.server_cpu_ms_per_1000, units.ms]);
}
const ratio = (a, b) => (b > 0 ? `${num(a / b, a / b < 10 ? 3 : 1)}x` : '-');

const version = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
};
const cpus = os.cpus();
const debian = version('cat', ['/etc/debian_version']);
const wsVersion = JSON.parse(readFileSync(path.join(root, 'node_modules/ws/package.json'), 'utf8')).version;
const goVersion = version('go', ['version']).replace(/^go version /, '');
const gorillaVersion = version('dpkg-query', ['-W', '-f=${Version}', 'golang-github-gorilla-websocket-dev']);
const commit = version('git', ['-C', root, 'rev-parse', '--short', 'HEAD']);
const dirty = version('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'bench']) ? ' with local changes' : '';

const out = [];
out.push(`Generated by \`${QUICK ? 'BENCH_QUICK=1 ' : ''}node bench/compare.mjs\` (\`make bench\` runs it) on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC, ` +
  `parley at commit ${commit}${dirty}; it took ${Math.round((Date.now() - started) / 1000)} s. Every run ended with no message lost, doubled ` +
  `or out of order and no connection closed.`);
out.push('');
out.push(`| what | parley | Node ws relay | gorilla chat (Go) | parley / relay | parley / gorilla |`);
out.push('|---|---|---|---|---|---|');
for (const [label, r, get, unit] of rows) {
  const [p, n, g] = ['parley', 'relay', 'gorilla'].map((k) => get(r[k]));
  out.push(`| ${label} | ${unit(p)} | ${unit(n)} | ${unit(g)} | ${ratio(p, n)} | ${ratio(p, g)} |`);
}
out.push('');
out.push(`Machine: ${cpus.length} cores (${cpus[0].model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, ` +
  `Debian ${debian}; load average ${load.toFixed(2)} when the run began (the machine is shared: ratios, not times, are what to read). ` +
  `parley: release build, its defaults (${cpus.length} workers here); Node ${process.versions.node}, ws ${wsVersion}; ${goVersion}, ` +
  `gorilla/websocket ${gorillaVersion} (Debian).`);
out.push('');
out.push('Commands, each against a fresh server (PORT and PID its own):');
out.push('');
out.push('```');
for (const s of servers) out.push(`${s.key.padEnd(7)}  ${s.command}`);
out.push('');
for (const step of plan) {
  const note = step.restart ? `   (${step.only} only; killed ${restartAfterMs} ms after it prints STORM-LAG, started again on PORT and DIR)` : step.only ? `   (${step.only} only)` : '';
  out.push(`build/bench/loadgen ${step.args.join(' ')} --url ws://127.0.0.1:PORT/PATH --server-pid PID${note}`);
}
out.push('');
for (const s of servers) out.push(`  ${s.key.padEnd(7)}  PATH ${s.wsPath}${s.args.length ? `, plus ${s.args.join(' ')}` : ''}`);
out.push('```');
const table = out.join('\n');

console.log(`\n${table}`);
mkdirSync(path.join(root, 'build/bench'), { recursive: true });
writeFileSync(path.join(root, 'build/bench/loadgen-table.md'), `${table}\n`);
if (QUICK) {
  console.log('\nBENCH_QUICK=1: written to build/bench/loadgen-table.md only, not to docs/benchmarks.md');
} else {
  const doc = readFileSync(DOC, 'utf8');
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) fail(`docs/benchmarks.md has no ${BEGIN} ... ${END} section to write into`);
  writeFileSync(DOC, `${doc.slice(0, a + BEGIN.length)}\n${table}\n${doc.slice(b)}`);
  console.log('\nwritten to docs/benchmarks.md (between the loadgen-table markers) and build/bench/loadgen-table.md');
}
