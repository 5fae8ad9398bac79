// cluster: several parley nodes on one real PostgreSQL and one real redis-server, all started by
// the test and stopped when it ends. startCluster(t, n) gives {pg, redis, nodes}; pg.halt() and
// pg.resume() stop and restart PostgreSQL keeping its data; redis.restart() restarts Redis empty
// on the same port. shareEngines() starts one PostgreSQL and one Redis for a whole test file, and
// gives each test's cluster a database and a Redis DB of its own (faster: no initdb per test).
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts, startPostgres } from '../../chat/lib/cluster.mjs';
import { ChatServer, DEFAULT_ARGS } from '../../chat/lib/server.mjs';
import { startRedis as startRedisServer } from '../../tools/redis.mjs';
import { ms, withTimeout } from '../../chat/lib/chat.mjs';

const pgSh = fileURLToPath(new URL('../../tools/pg.sh', import.meta.url));

function pgTool(...args) {
  const r = spawnSync(pgSh, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pg.sh ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

// A throwaway PostgreSQL server with one database for the cluster (tests/chat/lib/cluster.mjs),
// which a test can query, and halt and resume as a crash and a restart would.
export function startPg() {
  const pg = startPostgres();
  return {
    dir: pg.dir,
    url: pg.storeUrl,
    stop: pg.stop,
    // One SQL statement on the cluster's database; its rows, unaligned.
    query(sql) {
      const r = spawnSync('psql', ['-X', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', pg.storeUrl, '-c', sql], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`psql ${sql}: ${r.stderr}`);
      return r.stdout.trim();
    },
    halt: () => pgTool('halt', pg.dir),
    resume: () => pgTool('resume', pg.dir),
  };
}

// A redis-server on a free loopback port, no persistence, in a temporary directory.
export async function startRedis() {
  const [port] = await freePorts(1);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-redis-'));
  const redis = { port, dir, child: null, url: `redis://127.0.0.1:${port}` };
  redis.start = async () => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    redis.child = child;
    let out = '';
    const ready = new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('Ready to accept connections')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
    });
    await withTimeout(ready, ms(15000), 'redis-server to accept connections');
    child.stdout.resume();
  };
  redis.stop = async () => {
    const child = redis.child;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  };
  redis.restart = async () => {
    await redis.stop();
    await redis.start();
  };
  await redis.start();
  return redis;
}

// Starts PostgreSQL, Redis and n nodes on them (one after the other: the first migrates the
// schema). Every node logs msg=broker_up before this resolves. All are stopped when t ends.
// before(node0): runs on the first node before the others start (rooms they load at start).
export async function startCluster(t, n, { args = [], before } = {}) {
  const pg = startPg();
  let redis;
  const nodes = [];
  t.after(async () => {
    for (const node of nodes) await node.kill();
    for (const node of nodes) rmSync(node.dataDir, { recursive: true, force: true });
    if (redis) await redis.stop();
    if (redis) rmSync(redis.dir, { recursive: true, force: true });
    pg.stop();
  });
  redis = await startRedis();
  for (let i = 0; i < n; i++) {
    const node = await ChatServer.start(['--store', pg.url, '--broker', redis.url, '--node', `node${i}`, ...args]);
    nodes.push(node);
    await node.waitForLog((l) => l.fields.msg === 'broker_up', ms(15000), `node${i}: msg=broker_up`);
    if (i === 0 && before) await before(node);
  }
  return { pg, redis, nodes };
}

// One PostgreSQL and one redis-server for the test file (started before its first test, stopped
// after its last): { pg: {dir, url}, redis (tests/tools/redis.mjs: cli(...) runs redis-cli),
// cluster }. cluster(t, n, args, env, broker): n nodes of one chat on a database and a Redis DB of
// their own (broker(i, url): the Redis URL node i is given, a proxy's say), each up in Redis
// before it resolves, stopped cleanly when t ends (a node still running must exit 0: under ASan,
// a leak or a fault is a failure); nodes.store is the database's URL, nodes.db the Redis DB.
export function shareEngines({ databases = 64 } = {}) {
  const engines = { redis: null, pg: null };
  let nextDb = 0;
  before(async () => {
    engines.redis = await startRedisServer({ databases });
    const [dir, url] = pgTool('start').split('\n');
    engines.pg = { dir, url };
  });
  after(async () => {
    await engines.redis?.stop();
    if (engines.pg) pgTool('stop', engines.pg.dir);
  });
  engines.cluster = async (t, n, args = [], env = {}, broker = (i, url) => url) => {
    const db = ++nextDb;
    const name = `parley_nodes_${process.pid}_${db}`;
    const made = spawnSync('psql', ['-X', '-q', '-d', engines.pg.url, '-c', `CREATE DATABASE ${name} ENCODING 'UTF8' TEMPLATE template0`], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`create database: ${made.stderr}`);
    const store = engines.pg.url.replace('postgresql:///postgres', `postgresql:///${name}`);
    const nodes = [];
    t.after(async () => {
      for (const s of nodes) {
        const killed = !s.running;
        const info = await s.stop();
        s.removeData();
        if (!killed) assert.equal(info.code, 0, `node stopped with ${JSON.stringify(info)}:\n${s.stderr()}`);
      }
    });
    for (let i = 0; i < n; i++) {
      const s = await ChatServer.start(['--store', store, '--broker', `${broker(i, engines.redis.url)}/${db}`, '--node', `n${i}`, ...args],
        { defaults: DEFAULT_ARGS, env });
      nodes.push(s);
      await s.waitForLog((l) => l.fields.msg === 'broker_up', 10000, 'msg=broker_up');
    }
    nodes.store = store;
    nodes.db = db;
    return nodes;
  };
  return engines;
}

// A TCP proxy to Redis whose traffic from a node can be held (buffered, in order) and let go:
// Redis then hears nothing of it meanwhile, a subscription included. hold() holds what every
// connection sends; holdNew(marker) only what the connections opened from then on send (a live
// upgrade's new process's, not the old one's), and with a marker only from the first bytes
// holding it on (`:u:`: a subscription to a user's channel); holdMarked(marker) what any
// connection sends from its first bytes holding marker on; release() lets it all go, in order;
// cut() closes every connection there is (the node finds Redis gone).
export async function holdingProxy(t, port) {
  let held = null; // while holding: the chunks to send on release, as [socket, chunk]
  let onlyNew = false;
  let marker = null;
  let anyMarked = false; // holdMarked: every connection, from its marker on
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    const isNew = Boolean(held && onlyNew); // opened while new ones are held
    let holdsThis = isNew && !marker;
    const holding = (d) => {
      if ((isNew || anyMarked) && held && !holdsThis && marker) holdsThis = d.includes(marker);
      return held && ((!onlyNew && !anyMarked) || holdsThis);
    };
    client.on('data', (d) => (holding(d) ? held.push([upstream, d]) : upstream.write(d)));
    upstream.on('data', (d) => client.write(d));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    url: `redis://127.0.0.1:${server.address().port}`,
    hold: () => {
      held = [];
      onlyNew = false;
      anyMarked = false;
    },
    holdNew: (mark = null) => {
      held = [];
      onlyNew = true;
      anyMarked = false;
      marker = mark;
    },
    holdMarked: (mark) => {
      held = [];
      onlyNew = false;
      anyMarked = true;
      marker = mark;
    },
    cut: () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    release: () => {
      const chunks = held;
      held = null;
      for (const [s, d] of chunks ?? []) s.write(d);
    },
  };
}
