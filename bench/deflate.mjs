// deflate: what permessage-deflate costs and saves in one busy room. The same parley fan-out is
// run twice in one go, with the readers' `ws` clients declining deflate (the peer: plain frames)
// and then negotiating it; one writer sends chat-like texts at a steady rate.
//   node bench/deflate.mjs [receivers] [messages] [rate]   (defaults 500, 1000, 200 per second)
//   node bench/deflate.mjs sizes                           (compressed size of chat events)
// Reported per run: server CPU (user + system, /proc/<pid>/stat) per 1000 deliveries during the
// sends; bytes the readers received per delivery (TCP payload: frames, headers included); and,
// with deflate, the server's compressions per message (parley_deflate_messages_total{kind=
// "shared"}, and those discarded after losing a race between workers).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import zlib from 'node:zlib';
import { joinedClient, openMany, startParley } from './lib.mjs';

const ROOM = 'bench';
const READER_THREADS = 2;
const WORDS = ('the of and to in is you that it he was for on are as with his they at be this have from or one ' +
  'had by word but not what all were we when your can said there use an each which she do how their if will up ' +
  'other about out many then them these so some her would make like him into time has look two more write go see ' +
  'number no way could people my than first water been call who oil its now find long down day did get come made ' +
  'may part meeting tomorrow deploy coffee lunch release bug fixed thanks great idea sounds good').split(' ');

// A chat line of 40..240 characters, deterministic in k.
function chatText(k) {
  return wordsOf(40 + (k * 37) % 200, k);
}

// `len` characters of words, deterministic in seed.
function wordsOf(len, seed) {
  let x = seed * 2654435761 % 4294967296;
  let s = '';
  while (s.length < len) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += `${WORDS[x % WORDS.length]} `;
  }
  return s.slice(0, len).trimEnd();
}


// A reader thread: opens its connections, counts the messages and the bytes they arrive in.
async function readerThread({ url, first, count, messages, deflate }) {
  let got = 0;
  let all = [];
  let start = 0;
  const onMessage = (data) => {
    if (data.includes('"type":"message"')) got += 1;
    if (got === count * messages) {
      const bytes = all.reduce((n, ws) => n + ws._socket.bytesRead, 0) - start;
      parentPort.postMessage({ done: true, bytes, got });
    }
  };
  all = await openMany(count, (j) => joinedClient(url, `r${first + j}`, ROOM, onMessage, { deflate }), 100);
  start = all.reduce((n, ws) => n + ws._socket.bytesRead, 0);
  if (deflate && all.some((ws) => ws.extensions !== 'permessage-deflate')) throw new Error('deflate not negotiated');
  parentPort.postMessage({ ready: true });
}

function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function metric(port, name, label = '') {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const re = new RegExp(`^${name}${label.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm');
  return Number(re.exec(text)?.[1] ?? 0);
}

async function run(deflate, receivers, messages, rate) {
  const server = await startParley({ rooms: [ROOM] });
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const per = Math.ceil(receivers / READER_THREADS);
  const ready = [];
  const done = [];
  const threads = [];
  for (let k = 0; k < READER_THREADS; k++) {
    const count = Math.min(per, receivers - k * per);
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { url, first: k * per, count, messages, deflate } });
    ready.push(new Promise((resolve) => w.on('message', (m) => m.ready && resolve())));
    done.push(new Promise((resolve) => w.on('message', (m) => m.done && resolve(m))));
    w.on('error', (err) => {
      console.error(`reader thread failed: ${err.message}`);
      process.exit(1);
    });
    threads.push(w);
  }
  await Promise.all(ready);
  const sender = await joinedClient(url, 'sender', ROOM, () => {});
  const shared0 = await metric(server.port, 'parley_deflate_messages_total', '{kind="shared"}');
  const discarded0 = await metric(server.port, 'parley_deflate_discarded_total');
  const cpuBefore = cpuTicks(server.proc.pid);
  const t0 = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(messages, Math.floor(((performance.now() - t0) * rate) / 1000));
      for (; sent < due; sent++) sender.send(JSON.stringify({ type: 'send', id: sent, room: ROOM, text: chatText(sent) }));
      if (sent === messages) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
  const results = await Promise.all(done);
  const cpuMs = (cpuTicks(server.proc.pid) - cpuBefore) * 10;
  const shared = (await metric(server.port, 'parley_deflate_messages_total', '{kind="shared"}')) - shared0;
  const discarded = (await metric(server.port, 'parley_deflate_discarded_total')) - discarded0;
  for (const w of threads) await w.terminate();
  sender.terminate();
  server.proc.kill('SIGKILL');
  const deliveries = receivers * messages;
  const bytes = results.reduce((n, r) => n + r.bytes, 0);
  const r = { cpuPer1000: (cpuMs * 1000) / deliveries, bytesPer: bytes / deliveries, shared, discarded };
  console.log(
    `${deflate ? 'deflate' : 'plain  '}: ${deliveries} deliveries; server CPU ${cpuMs} ms = ` +
      `${r.cpuPer1000.toFixed(2)} ms per 1000 deliveries; ${r.bytesPer.toFixed(1)} bytes per delivery` +
      (deflate ? `; ${shared} compressions for ${messages} messages (${discarded} more discarded)` : ''),
  );
  return r;
}

// The compressed size of message events with texts of growing length (zlib's raw DEFLATE as
// parley uses it: level 6, window 2^15, sync flush, tail removed, frame header not counted).
function sizes() {
  console.log('event bytes -> compressed bytes (saved)');
  for (const len of [0, 10, 20, 40, 60, 80, 120, 160, 240, 400, 1000]) {
    const event = JSON.stringify({
      type: 'message', room: 'general', seq: 12345, ts: 1732300000000, from: 'alice_smith',
      text: wordsOf(len, len + 1),
    });
    const z = zlib.deflateRawSync(Buffer.from(event), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).length - 4;
    const saved = event.length - z;
    console.log(`${String(event.length).padStart(5)} -> ${String(z).padStart(5)} (${saved} bytes, ${((100 * saved) / event.length).toFixed(0)}%)`);
  }
}

if (!isMainThread) {
  await readerThread(workerData);
} else if (process.argv[2] === 'sizes') {
  sizes();
} else {
  const receivers = Number(process.argv[2] ?? 500);
  const messages = Number(process.argv[3] ?? 1000);
  const rate = Number(process.argv[4] ?? 200);
  console.log(`deflate: ${receivers} readers in one room, ${messages} messages of 40..240 characters at ${rate}/s`);
  const plain = await run(false, receivers, messages, rate);
  const deflate = await run(true, receivers, messages, rate);
  console.log(`server CPU per delivery with deflate: ${(deflate.cpuPer1000 / plain.cpuPer1000).toFixed(3)}x plain`);
  console.log(`bytes per delivery with deflate: ${(deflate.bytesPer / plain.bytesPer).toFixed(3)}x plain`);
}
