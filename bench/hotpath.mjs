// hotpath: the fan-out hot path, parley with --workers 1 against --workers 2 in one run, the C
// load generator (bench/loadgen) driving both: server CPU per 1000 deliveries, fan-out latency,
// and socket writes per delivery (parley_socket_writes_total against parley_deliveries_total,
// read from /metrics while the traffic flows, so the set-up's writes are left out).
//   node bench/hotpath.mjs [--pairs P] [--workers A,B] [loadgen options...]
//   e.g. node bench/hotpath.mjs --pairs 2 -n 10000 --messages 1000 --inflight 4
// Runs alternate (1, 2, 2, 1, ...) so a drift in the machine's load falls on both alike.
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { root, startParley } from './lib.mjs';

const argv = process.argv.slice(2);
let pairs = 1;
let workers = [1, 2];
const rest = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--pairs') pairs = Number(argv[++i]);
  else if (argv[i] === '--workers') workers = argv[++i].split(',').map(Number);
  else rest.push(argv[i]);
}
execFileSync('make', ['--no-print-directory', 'all', 'loadgen'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
const LOADGEN = path.join(root, 'build/bench/loadgen');

function metrics(port) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const num = (name) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(body)?.[1] ?? NaN);
        resolve({ writes: num('parley_socket_writes_total'), deliveries: num('parley_deliveries_total') });
      });
    }).on('error', reject);
  });
}

// The generator's clients are guests, which do not create rooms (protocol 1.1 rule 60): the
// broadcast's one room is made first, under a prefix given to it.
async function once(w) {
  const server = await startParley({ args: ['--workers', String(w)], rooms: ['hotpath0'] });
  const child = spawn(LOADGEN, ['--scenario', 'broadcast', '--url', `ws://127.0.0.1:${server.port}/ws`,
    '--server-pid', String(server.proc.pid), '--room-prefix', 'hotpath', '--quiet', ...rest],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  // Sample the counters until the generator ends: the first sample with deliveries > 0 has
  // the set-up's writes behind it; the difference to the last is the traffic's.
  let first = null;
  let last = null;
  let done = false;
  const exited = new Promise((resolve) => child.on('exit', (code) => { done = true; resolve(code); }));
  while (!done) {
    const m = await metrics(server.port).catch(() => null);
    if (m && !done) {
      if (m.deliveries > 0 && !first) first = m;
      last = m;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const code = await exited;
  server.proc.kill('SIGKILL');
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`workers ${w}: no RESULT line (exit ${code})`);
  const r = JSON.parse(line.slice(7));
  r.writes_per_delivery = first && last.deliveries > first.deliveries
    ? (last.writes - first.writes) / (last.deliveries - first.deliveries) : NaN;
  r.workers = w;
  return r;
}

const results = [];
for (let p = 0; p < pairs; p++) {
  const order = p % 2 === 0 ? workers : [...workers].reverse();
  for (const w of order) {
    const r = await once(w);
    results.push(r);
    console.log(`workers ${w}: ${r.ok ? 'ok' : 'FAILED ' + JSON.stringify(r.faults) + ' ' + r.problem}, ` +
      `CPU ${r.server_cpu_ms_per_1000.toFixed(3)} ms / 1000 deliveries, writes per delivery ${r.writes_per_delivery.toFixed(3)}, ` +
      `fan-out p50 ${r.fanout_ms.p50.toFixed(2)} ms p99 ${r.fanout_ms.p99.toFixed(2)} ms, ${Math.round(r.deliveries_per_s)} deliveries/s`);
  }
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const of = (w, get) => med(results.filter((r) => r.workers === w).map(get));
const [a, b] = workers;
console.log(`\nmedian of ${pairs}: CPU per 1000 deliveries, ${b} workers / ${a}: ` +
  `${of(b, (r) => r.server_cpu_ms_per_1000).toFixed(3)} / ${of(a, (r) => r.server_cpu_ms_per_1000).toFixed(3)} ms = ` +
  `${(of(b, (r) => r.server_cpu_ms_per_1000) / of(a, (r) => r.server_cpu_ms_per_1000)).toFixed(3)}x; ` +
  `writes per delivery ${of(b, (r) => r.writes_per_delivery).toFixed(3)} / ${of(a, (r) => r.writes_per_delivery).toFixed(3)}; ` +
  `fan-out p99 ${of(b, (r) => r.fanout_ms.p99).toFixed(2)} / ${of(a, (r) => r.fanout_ms.p99).toFixed(2)} ms`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
