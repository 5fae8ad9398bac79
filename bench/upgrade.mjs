// upgrade: what a client sees of an upgrade (SIGUSR2), live mode against drain mode in one run.
//
// N WebSocket clients (guests, in 20 rooms) each send a message with a cid every PERIOD ms and
// resend it on the same cid after a reconnect. The figure per client is the longest time one of
// its sends waited for its ack: the interruption it felt. Drain mode is the peer: it is what
// servers that hand over only their listening sockets do (every client reconnects and resumes);
// the same window without an upgrade ('none', 1 s) is the baseline.
// Every client also checks each room's seqs: none missing, doubled or out of order.
//
// usage: node bench/upgrade.mjs [clients=1000] [period_ms=250]
import { startParley } from './lib.mjs';
import WebSocket from 'ws';

const CLIENTS = Number(process.argv[2] ?? 1000);
const PERIOD = Number(process.argv[3] ?? 250);
const ROOMS = 20;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One client: logs in (by token after the first time), joins its room with `since`, sends on a
// timer, and resends what was not acked after a reconnect.
class Client {
  constructor(url, i) {
    this.url = url;
    this.name = `u${i}`;
    this.room = `r${i % ROOMS}`;
    this.token = null;
    this.lastSeq = 0;
    this.pending = new Map(); // request id -> first send time
    this.nextCid = 0;
    this.worstWait = 0;
    this.closes = 0;
    this.acks = 0;
    this.problems = [];
    this.stopped = false;
  }

  connect() {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      this.joined = false;
      ws.on('message', (data) => this.onMessage(JSON.parse(data), resolve));
      ws.on('close', () => {
        this.joined = false;
        if (this.stopped) return;
        this.closes++;
        setTimeout(() => this.connect(), 20);
      });
      ws.on('error', () => {});
    });
  }

  onMessage(m, resolve) {
    const ws = this.ws;
    if (m.type === 'hello') {
      ws.send(JSON.stringify(this.token ? { type: 'login', id: 1, token: this.token } : { type: 'login', id: 1, name: this.name }));
    } else if (m.type === 'welcome') {
      this.token = m.token;
      const join = { type: 'join', id: 2, room: this.room };
      if (this.lastSeq) join.since = this.lastSeq;
      ws.send(JSON.stringify(join));
    } else if (m.type === 'joined') {
      this.joined = true;
      for (const n of this.pending.keys()) this.send(n);
      resolve();
    } else if (m.type === 'message') {
      if (m.seq !== this.lastSeq + 1 && this.lastSeq !== 0) this.problems.push(`${this.name}: seq ${m.seq} after ${this.lastSeq}`);
      this.lastSeq = m.seq;
    } else if (m.type === 'ack') {
      const first = this.pending.get(m.id);
      if (first === undefined) return this.problems.push(`${this.name}: ack for ${m.id} not pending`);
      this.pending.delete(m.id);
      this.acks++;
      this.worstWait = Math.max(this.worstWait, performance.now() - first);
    } else if (m.type === 'error') {
      this.problems.push(`${this.name}: ${JSON.stringify(m)}`);
    }
  }

  // Request id n carries cid NAME-n, first time and on every resend.
  send(n) {
    this.ws.send(JSON.stringify({ type: 'send', id: n, room: this.room, text: `${this.name} ${n}`, cid: `${this.name}-${n}` }));
  }

  tick() {
    if (!this.joined || this.pending.size > 4) return;
    const n = 10 + this.nextCid++;
    this.pending.set(n, performance.now());
    this.send(n);
  }
}

const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];

async function run(mode) {
  const server = await startParley({
    args: ['--upgrade-mode', mode === 'none' ? 'live' : mode],
    rooms: Array.from({ length: ROOMS }, (_, i) => `r${i}`), // guests do not create rooms
  });
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const clients = [];
  for (let i = 0; i < CLIENTS; i += 200) {
    const some = [];
    for (let j = i; j < Math.min(CLIENTS, i + 200); j++) some.push(new Client(url, j));
    await Promise.all(some.map((c) => c.connect()));
    clients.push(...some);
  }
  // Stagger the senders over one period.
  const timers = clients.map((c, i) => setTimeout(() => { c.timer = setInterval(() => c.tick(), PERIOD); }, (i * PERIOD) / CLIENTS));
  await sleep(2000);
  for (const c of clients) c.worstWait = 0; // only the upgrade's window counts

  let log = '';
  const gone = new Promise((resolve) => {
    const watch = (d) => {
      log += d;
      if (/msg=predecessor_gone/.test(log)) resolve();
    };
    server.proc.stdout.on('data', watch);
    server.proc.stderr.on('data', watch);
  });
  const t0 = performance.now();
  if (mode === 'none') await sleep(1000);
  else {
    process.kill(server.proc.pid, 'SIGUSR2');
    await gone;
  }
  const upgradeMs = performance.now() - t0;
  if (process.env.BENCH_LOG) (await import('node:fs')).writeFileSync(`${process.env.BENCH_LOG}.${mode}`, log);
  await sleep(2000); // the clients' last resends settle
  timers.forEach(clearTimeout);
  for (const c of clients) clearInterval(c.timer);
  const waitUntil = performance.now() + 10000;
  while (clients.some((c) => c.pending.size) && performance.now() < waitUntil) await sleep(50);

  const waits = clients.map((c) => c.worstWait);
  const result = {
    mode,
    clients: CLIENTS,
    closes: clients.reduce((n, c) => n + c.closes, 0),
    unacked: clients.reduce((n, c) => n + c.pending.size, 0),
    acks: clients.reduce((n, c) => n + c.acks, 0),
    problems: clients.flatMap((c) => c.problems).slice(0, 5),
    worst_wait_p50_ms: Math.round(pct(waits, 50)),
    worst_wait_p99_ms: Math.round(pct(waits, 99)),
    worst_wait_max_ms: Math.round(Math.max(...waits)),
    sigusr2_to_old_gone_ms: Math.round(upgradeMs),
  };
  for (const c of clients) {
    c.stopped = true;
    c.ws.close();
  }
  // The server now runs as the new process: its pid is in the log line that says it is ready.
  const pids = [...log.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  for (const pid of new Set([server.proc.pid, ...pids])) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
  }
  return result;
}

const none = await run('none');
const live = await run('live');
const drain = await run('drain');
for (const r of [none, live, drain]) console.log(JSON.stringify(r));
console.log(`live/drain, longest wait for an ack per client: p50 ${(live.worst_wait_p50_ms / drain.worst_wait_p50_ms).toFixed(4)}x, ` +
  `p99 ${(live.worst_wait_p99_ms / drain.worst_wait_p99_ms).toFixed(4)}x; reconnects ${live.closes} vs ${drain.closes}`);
console.log(`live/no upgrade: p50 ${(live.worst_wait_p50_ms / none.worst_wait_p50_ms).toFixed(2)}x, p99 ${(live.worst_wait_p99_ms / none.worst_wait_p99_ms).toFixed(2)}x`);
if ([none, live, drain].some((r) => r.problems.length || r.unacked)) {
  console.error('problems: lost, doubled or reordered messages, or sends never acked');
  process.exit(1);
}
