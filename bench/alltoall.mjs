// alltoall: the all-to-all round of bench/compare.mjs (100 clients, 100 rounds), several parley
// binaries and the Go peer taking turns, each run on a fresh server; prints one JSON line a run
// (round p50/p99, server CPU per 1000 deliveries and, for parley, the store's commit time per
// round and the socket writes a round from /metrics) and the medians with their ranges.
// usage: node bench/alltoall.mjs [--runs N] [--no-go] PARLEY_BIN...   (make all loadgen peers first)
import { spawn } from 'node:child_process';
import path from 'node:path';
import { root, start, startParley } from './lib.mjs';

const argv = process.argv.slice(2);
let runs = 5;
let withGo = true;
const bins = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--runs') runs = Number(argv[++i]);
  else if (argv[i] === '--no-go') withGo = false;
  else bins.push(path.resolve(argv[i]));
}
if (!bins.length) bins.push(path.join(root, 'build/release/parley'));
const rounds = 100;

// One run against a fresh server: bin is a parley binary, or null for the Go peer.
async function runOnce(bin) {
  const s = bin
    ? await startParley({ bin, rooms: ['cmp0'] })
    : await start(path.join(root, 'build/bench/gorilla_chat'), [], /port=(\d+)/);
  const extra = bin ? ['--room-prefix', 'cmp'] : ['--protocol', 'relay', '--relay-lines'];
  const args = ['--scenario', 'all', '-n', '100', '--rounds', String(rounds), '--url', `ws://127.0.0.1:${s.port}/ws`,
    '--server-pid', String(s.proc.pid), ...extra];
  const out = await new Promise((resolve) => {
    const child = spawn(path.join(root, 'build/bench/loadgen'), args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    child.stdout.on('data', (d) => (o += d));
    child.on('exit', () => resolve(o));
  });
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  const r = line ? JSON.parse(line.slice(7)) : { ok: false };
  const row = { server: bin ?? 'go', ok: r.ok, p50: r.round_ms?.p50, p99: r.round_ms?.p99, cpu: r.server_cpu_ms_per_1000 };
  if (bin) {
    const m = await (await fetch(`http://127.0.0.1:${s.port}/metrics`)).text();
    const value = (name) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(m)?.[1]);
    row.commit_ms = (value('parley_store_commit_seconds_sum') * 1000) / rounds;
    row.commits = value('parley_store_commit_seconds_count');
    row.writes = value('parley_socket_writes_total') / rounds; // writev a round (set-up's too)
    row.waited = value('parley_waves_waited_total') / rounds; // hub batches held for a commit
    row.waited_out = value('parley_waves_waited_out_total') / rounds; // of those, at the limit
    row.checkpoints = value('parley_store_checkpoints_total');
  }
  s.proc.kill('SIGKILL');
  if (!r.ok) throw new Error(`${row.server}: loadgen failed: ${JSON.stringify(r.faults ?? r.problem ?? r)}`);
  console.log(JSON.stringify(row));
  return row;
}

const servers = [...bins, ...(withGo ? [null] : [])];
const all = [];
for (let i = 0; i < runs; i++) for (const bin of servers) all.push(await runOnce(bin));
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const server of servers.map((b) => b ?? 'go')) {
  const mine = all.filter((r) => r.server === server);
  const fields = ['p50', 'p99', 'cpu', 'commit_ms', 'commits', 'writes', 'waited', 'waited_out'].filter((f) => mine[0][f] !== undefined && !Number.isNaN(mine[0][f]));
  console.log(server, fields.map((f) => {
    const v = mine.map((r) => r[f]);
    return `${f} ${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`;
  }).join('  '));
}
