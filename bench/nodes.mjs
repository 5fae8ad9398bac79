// nodes: what a node costs when several share one PostgreSQL and one Redis (issue 11's goals),
// beside one node on SQLite with the same load per node, measured in the same run.
//   node bench/nodes.mjs [--clients N] [--room-size M] [--rate R] [--warmup S] [--duration S] [--rounds K]
//                        [--only sqlite1|pg1|pg3|pg3local]
//   (defaults: 60 clients per node, rooms of 12, 1 message per second per client, 3 s of warm-up,
//   20 s measured, 2 rounds; --only runs one configuration, e.g. to profile its nodes meanwhile)
// Three configurations, each on fresh nodes, interleaved over the rounds (A B C, then C B A, ...):
//   sqlite1  one node on its embedded SQLite;
//   pg1      one node on PostgreSQL + Redis (the engines' cost, without other nodes);
//   pg3      three nodes on one PostgreSQL + one Redis.
// and, only with --only pg3local, three nodes whose rooms each sit on one node (nothing crosses
// nodes but leases and presence): what being one of several nodes costs apart from the spread.
// Every node has the same load L: N WebSocket guests, in rooms of M members, each sending R
// messages a second (evenly spread). On one node a room's M members are all there; with three
// nodes each room has M/3 members on every node, so 2/3 of what a node delivers was stored by
// another node and came through Redis. Per node: its CPU (user + system, /proc/PID/stat) over the
// measured window divided by the deliveries its clients received in that window; latency from send
// to receipt, p50 / p99 (with three nodes, cross-node and same-node apart). The machine's load
// (busy share of all cores from /proc/stat, and the engines' and the clients' own CPU) is printed
// for each window, since the figures mean something only if the machine was not saturated.
// PostgreSQL runs with fsync off (tests/tools/pg.sh) and SQLite with --sync normal (no fsync).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { joinedClient, openMany, openRooms, root, startParley } from './lib.mjs';
import { startRedis } from '../tests/tools/redis.mjs';

const CLIENT_THREADS = 2;
const running = new Set(); // what a run started, killed if the bench ends early (stop() for each)
const now = () => performance.timeOrigin + performance.now(); // comparable across threads
const percentile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

// A client thread: opens its clients ({url, node, name, room}), then on 'go' sends at the rate
// until 'stop', recording every message received: its receipt time, latency and whether it
// crossed nodes. On 'report' with the window, answers what fell in it.
async function clientThread({ clients, rate }) {
  const got = { at: [], latency: [], cross: [], node: [] };
  let received = 0;
  const open = (c) =>
    joinedClient(c.url, c.name, c.room, (data) => {
      const m = JSON.parse(data);
      if (m.type !== 'message') return;
      const [sentAt, from] = m.text.split(' ');
      const t = now();
      received += 1;
      got.at.push(t);
      got.latency.push(t - Number(sentAt));
      got.cross.push(Number(from) !== c.node);
      got.node.push(c.node);
    });
  const sockets = await openMany(clients.length, (i) => open(clients[i]), 50);
  let acks = 0;
  for (const ws of sockets) ws.on('message', (d) => d.includes('"type":"ack"') && (acks += 1));
  parentPort.postMessage({ ready: true });

  let timer;
  let sent = 0;
  parentPort.on('message', (m) => {
    if (m.go) {
      // Round robin over the thread's clients: each sends `rate` a second, the sends evenly spread.
      const t0 = now();
      timer = setInterval(() => {
        const due = Math.floor(((now() - t0) * rate * clients.length) / 1000);
        for (; sent < due; sent++) {
          const i = sent % clients.length;
          sockets[i].send(JSON.stringify({ type: 'send', id: sent, room: clients[i].room, text: `${now().toFixed(3)} ${clients[i].node}` }));
        }
      }, 5);
    } else if (m.stop) {
      clearInterval(timer);
    } else if (m.report) {
      const { from, to } = m.report;
      const perNode = {};
      const cross = [];
      const same = [];
      for (let k = 0; k < got.at.length; k++) {
        if (got.at[k] < from || got.at[k] >= to) continue;
        perNode[got.node[k]] = (perNode[got.node[k]] ?? 0) + 1;
        (got.cross[k] ? cross : same).push(got.latency[k]);
      }
      parentPort.postMessage({ perNode, cross, same, sent, acks, received });
      for (const ws of sockets) ws.terminate();
    }
  });
}

// utime + stime of a process, in ms (clock ticks of 10 ms).
function cpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0; // a PostgreSQL backend that ended meanwhile
  }
}

// Context switches of all a process's threads (voluntary + forced): each is a sleep and a wake-up,
// which is most of what a message costs at this load.
function switches(pid) {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      for (const m of readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8').matchAll(/ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
    } catch {}
  }
  return n;
}

// The PostgreSQL server's processes: the postmaster and its children.
function pgPids(pgDir) {
  const master = Number(readFileSync(path.join(pgDir, 'data/postmaster.pid'), 'utf8').split('\n')[0]);
  const pids = [master];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === master) pids.push(Number(d));
    } catch {}
  }
  return pids;
}

// All cores' busy and total time from /proc/stat (ticks).
function machineTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}

// One throwaway PostgreSQL server for the whole run (tests/tools/pg.sh); a database per configuration.
function startPg() {
  const pgSh = path.join(root, 'tests/tools/pg.sh');
  const r = spawnSync(pgSh, ['start'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pg.sh start: ${r.stderr}`);
  const [dir, adminUrl] = r.stdout.trim().split('\n');
  let made = 0;
  return {
    dir,
    stop: () => spawnSync(pgSh, ['stop', dir]),
    database() {
      const name = `parley_bench${made++}`;
      const c = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', adminUrl, '-c', `CREATE DATABASE ${name} ENCODING 'UTF8' TEMPLATE template0`], { encoding: 'utf8' });
      if (c.status !== 0) throw new Error(`create database: ${c.stderr}`);
      return adminUrl.replace('postgresql:///postgres', `postgresql:///${name}`);
    },
  };
}

// Starts the configuration's nodes; resolves with {nodes, engines: pids, stop()}.
async function startConfig(kind, nodeCount, rooms, pg) {
  if (kind === 'sqlite') {
    const node = await startParley();
    running.add(node.proc.kill.bind(node.proc, 'SIGKILL'));
    await openRooms(`ws://127.0.0.1:${node.port}/ws`, rooms);
    return {
      nodes: [node],
      engines: () => [],
      stop: async () => {
        await stopNodes([node]);
        running.clear();
      },
    };
  }
  const store = pg.database();
  const redis = await startRedis();
  running.add(redis.stop);
  const redisPid = Number(/process_id:(\d+)/.exec(redis.cli('INFO', 'server'))[1]);
  const nodes = [];
  for (let k = 0; k < nodeCount; k++) {
    const args = ['--store', store, '--broker', redis.url, '--node', `node${k}`];
    // The first node makes the rooms before the others start (they load them at start).
    nodes.push(await startParley({ args, alsoLogged: ['msg=broker_up'] }));
    running.add(nodes[k].proc.kill.bind(nodes[k].proc, 'SIGKILL'));
    if (k === 0) await openRooms(`ws://127.0.0.1:${nodes[0].port}/ws`, rooms);
  }
  return {
    nodes,
    engines: () => [...pgPids(pg.dir), redisPid],
    stop: async () => {
      await stopNodes(nodes);
      await redis.stop();
      running.clear();
    },
  };
}

async function stopNodes(nodes) {
  for (const n of nodes) {
    const gone = new Promise((resolve) => n.proc.once('exit', resolve));
    n.proc.kill('SIGKILL');
    await gone;
    rmSync(n.data, { recursive: true, force: true });
  }
}

// Runs one configuration: nodeCount nodes, each with `clients` clients in rooms of roomSize spread
// over all nodes. Resolves with its figures.
// spread: each room's members on every node (else each room on one node).
async function run(name, kind, nodeCount, opts, pg, spread = true) {
  const { clients, roomSize, rate, warmup, duration } = opts;
  const perNodeInRoom = spread ? roomSize / nodeCount : roomSize;
  const roomsPerNode = clients / perNodeInRoom;
  const rooms = Array.from({ length: spread ? roomsPerNode : roomsPerNode * nodeCount }, (_, i) => `bench${i}`);
  const config = await startConfig(kind, nodeCount, rooms, pg);
  const everyone = [];
  for (let k = 0; k < nodeCount; k++) {
    const url = `ws://127.0.0.1:${config.nodes[k].port}/ws`;
    for (let j = 0; j < clients; j++) everyone.push({ url, node: k, name: `n${k}c${j}`, room: rooms[(spread ? 0 : k * roomsPerNode) + Math.floor(j / perNodeInRoom)] });
  }
  const threads = [];
  for (let t = 0; t < CLIENT_THREADS; t++) {
    const mine = everyone.filter((_, i) => i % CLIENT_THREADS === t);
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { clients: mine, rate } });
    w.on('error', (err) => {
      console.error(`${name}: client thread failed: ${err.stack}`);
      process.exit(1);
    });
    threads.push(w);
  }
  const next = (w, key) => new Promise((resolve) => w.on('message', (m) => m[key] !== undefined && resolve(m)));
  await Promise.all(threads.map((w) => next(w, 'ready')));

  for (const w of threads) w.postMessage({ go: true });
  await new Promise((r) => setTimeout(r, warmup * 1000));
  const pids = config.nodes.map((n) => n.proc.pid);
  const engines = config.engines();
  const snap = () => ({
    at: now(),
    nodes: pids.map(cpuMs),
    switches: pids.map(switches),
    engines: engines.reduce((a, p) => a + cpuMs(p), 0),
    self: process.cpuUsage(),
    machine: machineTicks(),
  });
  const before = snap();
  await new Promise((r) => setTimeout(r, duration * 1000));
  const after = snap();
  for (const w of threads) w.postMessage({ stop: true });
  await new Promise((r) => setTimeout(r, 2000)); // the last sends arrive
  const reports = await Promise.all(threads.map((w) => {
    const p = next(w, 'perNode');
    w.postMessage({ report: { from: before.at, to: after.at } });
    return p;
  }));
  for (const w of threads) await w.terminate();
  await config.stop();

  const seconds = (after.at - before.at) / 1000;
  const deliveries = Array(nodeCount).fill(0);
  const cross = [];
  const same = [];
  let sent = 0;
  let acked = 0;
  let received = 0;
  for (const r of reports) {
    for (const [k, n] of Object.entries(r.perNode)) deliveries[k] += n;
    cross.push(...r.cross);
    same.push(...r.same);
    sent += r.sent;
    acked += r.acks;
    received += r.received;
  }
  cross.sort((a, b) => a - b);
  same.sort((a, b) => a - b);
  const cpu = pids.map((_, k) => after.nodes[k] - before.nodes[k]);
  const perDelivery = cpu.map((c, k) => (c * 1000) / deliveries[k]); // µs per delivery
  const switchesPer = pids.map((_, k) => (after.switches[k] - before.switches[k]) / deliveries[k]);
  const selfMs = (after.self.user + after.self.system - before.self.user - before.self.system) / 1000;
  const busy = (after.machine.busy - before.machine.busy) / (after.machine.total - before.machine.total);
  const result = {
    name,
    usPerDelivery: perDelivery.reduce((a, b) => a + b, 0) / nodeCount,
    usPerDeliveryMax: Math.max(...perDelivery),
    switchesPerDelivery: switchesPer.reduce((a, b) => a + b, 0) / nodeCount,
    p50: percentile(cross.length ? cross : same, 50),
    p99: percentile(cross.length ? cross : same, 99),
    sameP50: percentile(same, 50),
    sameP99: percentile(same, 99),
    busy,
    lost: sent * roomSize - received + (sent - acked),
  };
  const lost = sent * roomSize - received;
  console.log(
    `${name.padEnd(8)} ${nodeCount} node(s) x ${clients} clients, rooms of ${roomSize}, ${rate}/s each: ` +
      `${sent} sent, ${acked} acked, ${received} of ${sent * roomSize} deliveries arrived${lost ? ` (${lost} missing)` : ''}\n` +
      `         window ${seconds.toFixed(1)} s: deliveries per node ${deliveries.map((d) => (d / seconds).toFixed(0)).join(', ')} /s; ` +
      `node CPU ${cpu.map((c) => `${c} ms`).join(', ')} = ${perDelivery.map((u) => u.toFixed(1)).join(', ')} µs per delivery; ` +
      `context switches per delivery ${switchesPer.map((c) => c.toFixed(2)).join(', ')}\n` +
      `         latency ${cross.length ? 'cross-node ' : ''}p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms` +
      (cross.length ? `; same-node p50 ${result.sameP50.toFixed(2)} ms, p99 ${result.sameP99.toFixed(2)} ms` : '') + '\n' +
      `         machine: ${(busy * 100).toFixed(0)}% of ${os.cpus().length} cores busy; engines (PostgreSQL + Redis) ` +
      `${((after.engines - before.engines) / seconds / 10).toFixed(1)}% of a core, clients ${(selfMs / seconds / 10).toFixed(1)}%, ` +
      `nodes ${(cpu.reduce((a, b) => a + b, 0) / seconds / 10).toFixed(1)}%; loadavg ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  );
  return result;
}

function parseArgs(argv) {
  const opts = { clients: 60, roomSize: 12, rate: 1, warmup: 3, duration: 20, rounds: 2, only: null };
  const flags = { '--clients': 'clients', '--room-size': 'roomSize', '--rate': 'rate', '--warmup': 'warmup', '--duration': 'duration', '--rounds': 'rounds' };
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--only' && ['sqlite1', 'pg1', 'pg3', 'pg3local'].includes(argv[i + 1])) {
      opts.only = argv[i + 1];
      continue;
    }
    const key = flags[argv[i]];
    const v = Number(argv[i + 1]);
    if (!key || !(v > 0)) {
      console.error('usage: node bench/nodes.mjs [--clients N] [--room-size M] [--rate R] [--warmup S] [--duration S] [--rounds K] [--only sqlite1|pg1|pg3|pg3local]');
      process.exit(2);
    }
    opts[key] = v;
  }
  if (opts.roomSize % 3 || opts.clients % (opts.roomSize / 3) || opts.clients % opts.roomSize) {
    console.error('nodes: --room-size must be a multiple of 3, and --clients a multiple of it');
    process.exit(2);
  }
  return opts;
}

if (!isMainThread) {
  await clientThread(workerData);
} else {
  const opts = parseArgs(process.argv.slice(2));
  const pg = startPg();
  process.on('exit', () => {
    for (const stop of running) stop();
    pg.stop();
  });
  process.on('SIGINT', () => process.exit(130));
  const configs = [
    ['sqlite1', 'sqlite', 1],
    ['pg1', 'pg', 1],
    ['pg3', 'pg', 3],
    ['pg3local', 'pg', 3, false],
  ].filter(([name]) => (opts.only ? name === opts.only : name !== 'pg3local'));
  const rounds = [];
  for (let r = 0; r < opts.rounds; r++) {
    console.log(`-- round ${r + 1}`);
    const byName = {};
    for (const [name, kind, n, spread] of r % 2 ? [...configs].reverse() : configs) byName[name] = await run(name, kind, n, opts, pg, spread);
    rounds.push(byName);
  }
  const failed = rounds.some((b) => Object.values(b).some((c) => c.lost));
  if (failed) console.log('nodes: FAILED: some messages were not acked or not delivered to every member (above)');
  if (opts.only) process.exit(failed ? 1 : 0);
  const x = (a, b) => `${(a / b).toFixed(2)}x`;
  console.log(`\nnodes: ${opts.clients} clients per node, rooms of ${opts.roomSize}, ${opts.rate} message/s per client, ${opts.duration} s measured`);
  console.log('round  CPU/delivery pg1/sqlite1  pg3/pg1  pg3/sqlite1 (goal <= 1.3x, worst node)   p99 pg3 cross-node/sqlite1 (goal < 2x)   ' +
    'p99 pg1/sqlite1   p50 pg3 cross-node/sqlite1   pg3 cross/same-node p50, p99   switches/delivery sqlite1/pg1/pg3   busy');
  rounds.forEach((b, r) => {
    const [s, p1, p3] = [b.sqlite1, b.pg1, b.pg3];
    console.log(
      `${String(r + 1).padEnd(6)} ${x(p1.usPerDelivery, s.usPerDelivery).padStart(25)} ${x(p3.usPerDelivery, p1.usPerDelivery).padStart(8)} ` +
        `${x(p3.usPerDelivery, s.usPerDelivery).padStart(12)} (${x(p3.usPerDeliveryMax, s.usPerDelivery)})`.padEnd(42) +
        `${x(p3.p99, s.p99).padStart(40)} ${x(p1.p99, s.p99).padStart(17)} ${x(p3.p50, s.p50).padStart(28)} ` +
        `${`${x(p3.p50, p3.sameP50)}, ${x(p3.p99, p3.sameP99)}`.padStart(31)}   ` +
        `${[s, p1, p3].map((c) => c.switchesPerDelivery.toFixed(2)).join('/').padStart(33)}   ${[s, p1, p3].map((c) => `${(c.busy * 100).toFixed(0)}%`).join('/')}`,
    );
  });
  process.exit(failed ? 1 : 0);
}
