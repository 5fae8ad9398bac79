// restart_storm: the reconnect storm across a real restart of parley (compare.mjs's "after a
// restart" row) for two parley binaries taking turns, beside the relay's plain connect of as many
// clients in each round, with the store reads the restarted process made (its /metrics).
//   node bench/restart_storm.mjs A_BIN B_BIN [rounds=3] [n=15000]
// Prints one line per run and a RESULT line of JSON; exits 1 on any failed run.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killAndWait, root, start, startParley } from './lib.mjs';

const [binA, binB, roundsArg = '3', nArg = '15000'] = process.argv.slice(2);
if (!binA || !binB) {
  console.error('usage: node bench/restart_storm.mjs A_BIN B_BIN [rounds] [n]');
  process.exit(2);
}
const rounds = Number(roundsArg);
const n = Number(nArg);
const LOADGEN = path.join(root, 'build/bench/loadgen');
const procs = String(Math.ceil(n / 10000));
const restartAfterMs = 1500; // as compare.mjs: killed 1.5 s into the lag
const stormArgs = ['--scenario', 'storm', '-n', String(n), '--procs', procs, '--rooms', '1', '--send-rate', '3',
  '--duration', '3', '--storm-lag', '2', '--storm-restart', '--room-prefix', 'cmp'];

function fail(message) {
  console.error(`restart_storm: FAILED: ${message}`);
  process.exit(1);
}

// Runs the generator with args; onOut sees its stdout so far. Resolves with the RESULT's JSON.
function loadgen(args, onOut = () => {}) {
  return new Promise((resolve) => {
    const child = spawn(LOADGEN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      onOut(out);
    });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      resolve(line ? { ...JSON.parse(line.slice(7)), exit: code } : { ok: false, exit: code, problem: 'no RESULT line' });
    });
  });
}

async function relayConnect() {
  const s = await start(process.execPath, [path.join(root, 'bench/peers/relay_server.mjs')], /port=(\d+)/);
  const r = await loadgen(['--scenario', 'idle', '-n', String(n), '--procs', procs, '--duration', '1',
    '--url', `ws://127.0.0.1:${s.port}/`, '--server-pid', String(s.proc.pid), '--protocol', 'relay']);
  s.proc.kill('SIGKILL');
  if (!r.ok || r.exit !== 0) fail(`relay connect: ${JSON.stringify(r)}`);
  return r.setup_s;
}

async function metric(port, name) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : null;
}

async function restartStorm(bin) {
  let s = await startParley({ bin, rooms: ['cmp0'] });
  const { port, data } = s;
  let restarting = null;
  const restart = async () => {
    await new Promise((r) => setTimeout(r, restartAfterMs));
    await killAndWait(s.proc);
    s = await startParley({ bin, port, data });
  };
  const r = await loadgen([...stormArgs, '--url', `ws://127.0.0.1:${port}/ws`, '--server-pid', String(s.proc.pid)], (out) => {
    if (!restarting && out.includes('STORM-LAG')) restarting = restart();
  });
  await restarting;
  const stat = readFileSync(`/proc/${s.proc.pid}/stat`, 'utf8');
  const [utime, stime] = stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(11, 13).map(Number);
  r.server_cpu_restarted_s = (utime + stime) / 100;
  r.replay_reads = await metric(port, 'parley_replay_reads_total');
  r.seed_reads = await metric(port, 'parley_ring_seed_reads_total');
  await killAndWait(s.proc);
  rmSync(data, { recursive: true, force: true });
  if (!restarting || !r.ok || r.exit !== 0) fail(`${bin}: ${JSON.stringify(r)}`);
  return r;
}

const all = [];
for (let i = 0; i < rounds; i++) {
  const relay = await relayConnect();
  const order = i % 2 === 0 ? [['A', binA], ['B', binB]] : [['B', binB], ['A', binA]];
  for (const [key, bin] of order) {
    const load = os.loadavg()[0];
    const r = await restartStorm(bin);
    const row = { round: i + 1, build: key, load: Number(load.toFixed(1)), relay_connect_s: relay, storm_s: r.storm_s,
      ratio: Number((r.storm_s / relay).toFixed(2)), cpu_restarted_s: r.server_cpu_restarted_s,
      replay_reads: r.replay_reads, seed_reads: r.seed_reads, replay_min: r.replay_min };
    console.log(JSON.stringify(row));
    all.push(row);
  }
}
console.log(`RESULT ${JSON.stringify(all)}`);
