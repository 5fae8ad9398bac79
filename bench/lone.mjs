// lone: a lone message's latency on an idle server. One sender and one receiver in a room; the
// sender sends a message only once the receiver has the one before, 200 times, so the server is
// idle when each arrives. Several parley binaries take turns, each run on a fresh server; prints
// one JSON line a run (latency send -> receipt, p50/p99/max in ms, and the deliveries the hub held
// for a commit) and the medians with ranges.
// usage: node bench/lone.mjs [--runs N] [--messages N] PARLEY_BIN...   (make all first)
import path from 'node:path';
import { joinedClient, root, startParley } from './lib.mjs';

const argv = process.argv.slice(2);
let runs = 5;
let messages = 200;
const bins = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--runs') runs = Number(argv[++i]);
  else if (argv[i] === '--messages') messages = Number(argv[++i]);
  else bins.push(path.resolve(argv[i]));
}
if (!bins.length) bins.push(path.join(root, 'build/release/parley'));
const ROOM = 'lone';

async function runOnce(bin) {
  const s = await startParley({ bin, rooms: [ROOM] });
  const url = `ws://127.0.0.1:${s.port}/ws`;
  let arrived = null;
  const receiver = await joinedClient(url, 'receiver', ROOM, (data) => {
    if (String(data).includes('"type":"message"') && arrived) arrived();
  });
  const sender = await joinedClient(url, 'sender', ROOM, () => {});
  const ms = [];
  for (let i = 0; i < messages; i++) {
    const got = new Promise((r) => (arrived = r));
    const t0 = process.hrtime.bigint();
    sender.send(JSON.stringify({ type: 'send', id: 10 + i, room: ROOM, text: `lone ${i}` }));
    await got;
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  // Deliveries the hub held for a commit (parley_waves_waited_total; absent before it existed).
  const m = await (await fetch(`http://127.0.0.1:${s.port}/metrics`)).text();
  const waited = Number(/^parley_waves_waited_total (\S+)/m.exec(m)?.[1] ?? NaN);
  receiver.close();
  sender.close();
  s.proc.kill('SIGKILL');
  ms.sort((a, b) => a - b);
  const at = (q) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
  const row = { server: bin, p50: at(0.5), p99: at(0.99), max: ms[ms.length - 1], waited };
  console.log(JSON.stringify(row));
  return row;
}

const all = [];
for (let i = 0; i < runs; i++) for (const bin of bins) all.push(await runOnce(bin));
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const bin of bins) {
  const mine = all.filter((r) => r.server === bin);
  console.log(bin, ['p50', 'p99', 'max'].map((f) => {
    const v = mine.map((r) => r[f]);
    return `${f} ${median(v).toFixed(3)} (${Math.min(...v).toFixed(3)}-${Math.max(...v).toFixed(3)})`;
  }).join('  '));
}
