// loadgen: runs one scenario of the C load generator (bench/loadgen, `make loadgen`) against a
// fresh parley and, where the scenario fits a plain relay (idle, broadcast, all), against the
// Node `ws` relay peer (bench/peers/relay_server.mjs) in the same run, and prints both summaries
// and parley's figures as ratios to the peer's.
//   node bench/loadgen.mjs SCENARIO [loadgen options...]
//   e.g. node bench/loadgen.mjs broadcast -n 5000 --messages 1000 --inflight 4
// parley runs on its defaults (2 workers on this machine) with --rate-limit 0 and
// --max-conns-per-ip 0 (startParley in bench/lib.mjs): every client comes from 127.0.0.1 (or
// --source), and the per-address limit of 200 would refuse the rest.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { root, start, startParley } from './lib.mjs';

const [scenario, ...rest] = process.argv.slice(2);
if (!['idle', 'broadcast', 'all', 'rooms', 'storm'].includes(scenario)) {
  console.error('usage: node bench/loadgen.mjs idle|broadcast|all|rooms|storm [loadgen options...]');
  process.exit(2);
}
execFileSync('make', ['--no-print-directory', 'all', 'loadgen'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
const LOADGEN = path.join(root, 'build/bench/loadgen');

// Runs the generator against `server` (its port and process) and resolves with the RESULT line.
function run(name, server, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(LOADGEN, ['--scenario', scenario, '--url', `ws://127.0.0.1:${server.port}${server.wsPath}`,
      '--server-pid', String(server.proc.pid), ...args, ...rest], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      console.log(`== ${name}\n${out.split('\n').filter((l) => !l.startsWith('RESULT ')).join('\n')}`);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) return reject(new Error(`${name}: no RESULT line (exit ${code})`));
      const result = JSON.parse(line.slice(7));
      result.exit = code;
      server.proc.kill('SIGKILL');
      resolve(result);
    });
  });
}

// The generator's clients are guests, which do not create rooms (protocol 1.1 rule 60): its rooms
// are made first, under a prefix given to it.
const CLIENTS_DEFAULT = 100; // the generator's -n default (bench/loadgen/options.c)
const argOf = (flag, dflt) => (rest.includes(flag) ? Number(rest[rest.indexOf(flag) + 1]) : dflt);
const roomCount = argOf('--rooms', ['rooms', 'storm'].includes(scenario) ? Math.max(1, Math.floor(argOf('-n', CLIENTS_DEFAULT) / 20)) : 1);
const prefix = `lgb${process.pid % 100000}r`;
const parley = await startParley({ rooms: Array.from({ length: roomCount }, (_, i) => `${prefix}${i}`) });
parley.wsPath = '/ws';
const ours = await run('parley', parley, ['--room-prefix', prefix]);
let theirs = null;
if (['idle', 'broadcast', 'all'].includes(scenario)) {
  const peer = await start(process.execPath, [path.join(root, 'bench/peers/relay_server.mjs')], /port=(\d+)/);
  peer.wsPath = '/';
  theirs = await run('node ws relay (peer)', peer, ['--protocol', 'relay']);
}

const fmt = (x, d = 2) => (typeof x === 'number' ? x.toFixed(d) : '-');
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? `${(a / b).toFixed(3)}x` : '-');
const rows = [
  ['set-up time (s)', (r) => r.setup_s],
  ['server RSS per client (bytes)', (r) => r.rss_bytes_per_client, 0],
  ['server CPU during set-up (s)', (r) => r.server_cpu_setup_s],
];
if (scenario !== 'idle') {
  rows.push(
    ['deliveries per second', (r) => r.deliveries_per_s, 0],
    ['server CPU per 1000 deliveries (ms)', (r) => r.server_cpu_ms_per_1000, 3],
    ['latency p50 (ms)', (r) => r.latency_ms.p50],
    ['latency p99 (ms)', (r) => r.latency_ms.p99],
  );
}
if (scenario === 'broadcast') rows.push(['fan-out completion p50 (ms)', (r) => r.fanout_ms.p50], ['fan-out completion p99 (ms)', (r) => r.fanout_ms.p99]);
if (scenario === 'all') rows.push(['round time p50 (ms)', (r) => r.round_ms.p50], ['round time p99 (ms)', (r) => r.round_ms.p99]);
if (scenario === 'storm') rows.push(['all back and replayed after the storm (s)', (r) => r.storm_s]);
rows.push(['loadgen CPU, user + system (s)', (r) => r.loadgen_cpu_s]);

console.log(`\n${scenario}: ${ours.clients} clients${theirs ? ', parley beside the relay peer' : ''}`);
for (const [label, get, d] of rows) {
  const line = `  ${label.padEnd(42)} parley ${fmt(get(ours), d).padStart(12)}`;
  console.log(theirs ? `${line}   peer ${fmt(get(theirs), d).padStart(12)}   ratio ${ratio(get(ours), get(theirs))}` : line);
}
for (const [name, r] of [['parley', ours], ['peer', theirs]]) {
  if (r && !r.ok) console.log(`  ${name}: FAILED: ${JSON.stringify(r.faults)} ${r.problem}`);
}
process.exit(ours.ok && (!theirs || theirs.ok) ? 0 : 1);
