// store_pg: how many messages per second one node stores on PostgreSQL at a fixed offered rate,
// with SQLite measured in the same run as the peer. Each backend gets a fresh parley and the C
// load generator's `rooms` scenario (bench/loadgen); PostgreSQL is a throwaway server started by
// tests/tools/pg.sh (fsync off, as the tests run it) on this machine.
//   node bench/store_pg.mjs [--rate R] [--duration S] [-n N] [--rooms K]
//   defaults: --rate 4000 --duration 5 -n 2000 --rooms 100 (rooms of 20, as docs/operations.md)
// The generator sends at the offered rate for the duration whatever the acks, then waits for
// every ack: a server that keeps up is done about when sending stops, one that does not drains
// its queue first. So stored per second = acked / (first send .. last ack), at most the offered
// rate.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { root, startParley } from './lib.mjs';

const argv = process.argv.slice(2);
const arg = (flag, dflt) => (argv.includes(flag) ? Number(argv[argv.indexOf(flag) + 1]) : dflt);
const rate = arg('--rate', 4000);
const duration = arg('--duration', 5);
const clients = arg('-n', 2000);
const roomCount = arg('--rooms', 100);

execFileSync('make', ['--no-print-directory', 'all', 'loadgen'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
const LOADGEN = path.join(root, 'build/bench/loadgen');

// The generator against a fresh parley started with args; resolves with its RESULT.
async function measure(name, args) {
  const prefix = `sp${process.pid % 10000}${name[0]}r`;
  const parley = await startParley({ args, rooms: Array.from({ length: roomCount }, (_, i) => `${prefix}${i}`) });
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn(LOADGEN, ['--scenario', 'rooms', '--url', `ws://127.0.0.1:${parley.port}/ws`,
        '--server-pid', String(parley.proc.pid), '--room-prefix', prefix, '-n', String(clients),
        '--rooms', String(roomCount), '--send-rate', String(rate), '--duration', String(duration),
        '--drain-timeout', '300', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('error', reject);
      child.on('exit', (code) => {
        const line = out.split('\n').find((l) => l.startsWith('RESULT '));
        if (!line) return reject(new Error(`${name}: no RESULT line (exit ${code})`));
        resolve(JSON.parse(line.slice(7)));
      });
    });
  } finally {
    parley.proc.kill('SIGKILL');
  }
}

const pg = execFileSync(path.join(root, 'tests/tools/pg.sh'), ['start'], { cwd: root }).toString().trim().split('\n');
const results = [];
try {
  results.push(['sqlite', await measure('sqlite', [])]);
  results.push(['postgres', await measure('postgres', ['--store', pg[1]])]);
} finally {
  execFileSync(path.join(root, 'tests/tools/pg.sh'), ['stop', pg[0]], { cwd: root });
}

const fmt = (x, d = 0) => (typeof x === 'number' ? x.toFixed(d) : '-');
console.log(`store_pg: ${clients} clients in ${roomCount} rooms, offered ${rate} messages/s for ${duration} s`);
console.log(`  ${'backend'.padEnd(10)} ${'sent'.padStart(7)} ${'acked'.padStart(7)} ${'time (s)'.padStart(9)}` +
  ` ${'stored/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'server CPU s'.padStart(13)}`);
const stored = {};
for (const [name, r] of results) {
  stored[name] = r.traffic_s > 0 ? r.acked / r.traffic_s : 0;
  console.log(`  ${name.padEnd(10)} ${fmt(r.sent).padStart(7)} ${fmt(r.acked).padStart(7)} ${fmt(r.traffic_s, 2).padStart(9)}` +
    ` ${fmt(stored[name]).padStart(9)} ${fmt(r.latency_ms.p50, 1).padStart(8)} ${fmt(r.latency_ms.p99, 1).padStart(8)}` +
    ` ${fmt(r.server_cpu_traffic_s, 2).padStart(13)}${r.ok ? '' : `  FAILED: ${r.problem}`}`);
}
console.log(`  postgres / sqlite: ${(stored.postgres / stored.sqlite).toFixed(3)}x`);
console.log(`RESULT ${JSON.stringify({ rate, duration, clients, rooms: roomCount, stored })}`);
process.exit(results.every(([, r]) => r.ok) ? 0 : 1);
