// fanout: one room, many readers, one writer at a steady rate; parley beside a Node `ws` chat
// server (bench/peers/chat_server.mjs) measured in the same run with the same clients.
//   node bench/fanout.mjs [receivers] [messages] [rate]   (defaults 1000, 2000, 500 per second)
// Reported per server:
//   - server CPU (user + system, from /proc/<pid>/stat) per 1000 deliveries, during the sends only;
//   - delivery latency (send → receipt at every reader) at the 50th, 99th percentile and max.
// The readers run in two worker threads of this process, which shares the machine's cores with
// the server: latency includes their queueing too, the same for both servers. parley stores each
// message durably (fsync by group commit) before delivering it; the peer stores nothing.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { joinedClient, openMany, root, start, startParley } from './lib.mjs';

const ROOM = 'bench';
const READER_THREADS = 2;
const now = () => performance.timeOrigin + performance.now(); // comparable across threads


// A reader thread: opens its connections, then records the latency of every message it gets.
async function readerThread({ url, first, count, messages }) {
  const latencies = new Float64Array(count * messages);
  let got = 0;
  const marker = Buffer.from('"text":"');
  const onMessage = (data) => {
    const at = data.indexOf(marker);
    if (at < 0) return; // presence of later joiners
    const sentAt = Number(data.toString('latin1', at + marker.length, data.indexOf('"', at + marker.length)));
    latencies[got++] = now() - sentAt;
    if (got === latencies.length) parentPort.postMessage({ done: latencies }, [latencies.buffer]);
  };
  await openMany(count, (j) => joinedClient(url, `r${first + j}`, ROOM, onMessage), 100);
  parentPort.postMessage({ ready: true });
}

function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (1/100 s)
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function run(name, server, receivers, messages, rate) {
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const per = Math.ceil(receivers / READER_THREADS);
  const threads = [];
  const ready = [];
  const done = [];
  for (let k = 0; k < READER_THREADS; k++) {
    const count = Math.min(per, receivers - k * per);
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { url, first: k * per, count, messages } });
    ready.push(new Promise((resolve) => w.on('message', (m) => m.ready && resolve())));
    done.push(new Promise((resolve) => w.on('message', (m) => m.done && resolve(m.done))));
    w.on('error', (err) => {
      console.error(`${name}: reader thread failed: ${err.message}`);
      process.exit(1);
    });
    threads.push(w);
  }
  await Promise.all(ready);
  let acked = 0;
  const sender = await joinedClient(url, 'sender', ROOM, () => {});
  sender.on('message', (data) => {
    if (data.includes('"type":"ack"')) acked += 1;
  });

  const cpuBefore = cpuTicks(server.proc.pid);
  const t0 = now();
  let sent = 0;
  await new Promise((resolve) => {
    // Paced in 10 ms ticks: each tick sends what the rate allows since the start.
    const timer = setInterval(() => {
      const due = Math.min(messages, Math.floor(((now() - t0) * rate) / 1000));
      for (; sent < due; sent++) sender.send(JSON.stringify({ type: 'send', id: sent, room: ROOM, text: String(now()) }));
      if (sent === messages) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
  const all = await Promise.all(done);
  const elapsed = (now() - t0) / 1000;
  const cpuMs = (cpuTicks(server.proc.pid) - cpuBefore) * 10;
  for (const w of threads) await w.terminate();
  sender.terminate();
  server.proc.kill('SIGKILL');

  const latencies = new Float64Array(all.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of all) latencies.set(new Float64Array(a), (at += a.length) - a.length);
  latencies.sort();
  const deliveries = receivers * messages;
  const result = {
    cpuPer1000: (cpuMs * 1000) / deliveries,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1],
  };
  console.log(
    `${name.padEnd(22)} ${deliveries} deliveries in ${elapsed.toFixed(1)} s (${acked} acks): ` +
      `server CPU ${cpuMs} ms = ${result.cpuPer1000.toFixed(2)} ms per 1000 deliveries; ` +
      `latency p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, max ${result.max.toFixed(1)} ms`,
  );
  return result;
}

if (!isMainThread) {
  await readerThread(workerData);
} else {
  const receivers = Number(process.argv[2] ?? 1000);
  const messages = Number(process.argv[3] ?? 2000);
  const rate = Number(process.argv[4] ?? 500);
  const ours = await run('parley', await startParley({ rooms: [ROOM] }), receivers, messages, rate);
  const peer = await start(process.execPath, [path.join(root, 'bench/peers/chat_server.mjs')], /port=(\d+)/);
  const theirs = await run('node ws 8 chat (peer)', peer, receivers, messages, rate);
  console.log(`fan-out: ${receivers} readers in one room, ${messages} messages at ${rate}/s`);
  console.log(`server CPU per delivery: parley uses ${(ours.cpuPer1000 / theirs.cpuPer1000).toFixed(3)}x the peer's`);
  console.log(`latency p50: ${(ours.p50 / theirs.p50).toFixed(3)}x the peer's; p99: ${(ours.p99 / theirs.p99).toFixed(3)}x`);
}
