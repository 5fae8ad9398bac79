// Starts parley for the chat suites: fast password hashing, restarts on the same --data dir,
// SIGKILL that keeps the data (unlike the black-box helper's kill, which removes it).
import {
  ParleyProcess,
  READY_TIMEOUT,
  freshDataDir,
  parleyBin,
  spawnParley,
} from '../../blackbox/lib/server.mjs';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

export { freshDataDir, parleyBin };

// PARLEY_TEST_STORE=pg runs every chat server on PostgreSQL (--store) instead of SQLite: the
// server named by PARLEY_TEST_PG_URL (postgresql:///postgres?host=DIR&port=N&user=U, as
// tests/tools/pg.sh prints; tests/tools/with_pg.sh starts one and sets both). Each data
// directory gets a database of its own, so a restart on the same directory finds its data and
// every fresh server starts empty; the database is dropped with the directory.
export const onPostgres = process.env.PARLEY_TEST_STORE === 'pg';
const pgAdminUrl = process.env.PARLEY_TEST_PG_URL ?? '';
if (onPostgres && !pgAdminUrl.startsWith('postgresql:///')) {
  throw new Error('PARLEY_TEST_STORE=pg needs PARLEY_TEST_PG_URL (see tests/tools/with_pg.sh)');
}

// The skip option of a test of SQLite's own files (damage, size cap, locks, a 1.0 database file,
// bytes left in the files): such a test does not apply to a run on PostgreSQL.
export const sqliteOnly = onPostgres ? 'about the SQLite files; this run is on PostgreSQL' : false;

// The skip option of a test of the PostgreSQL store itself.
export const postgresOnly = onPostgres ? false : 'about the PostgreSQL store; run with PARLEY_TEST_STORE=pg';

// Runs one SQL command on the server's admin database with psql; its output (unaligned, tuples
// only). Throws on failure.
export function pgAdmin(sql) {
  const r = spawnSync('psql', ['-X', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', pgAdminUrl, '-c', sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql ${sql}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

// A psql session on the database of dataDir, for a test to drive line by line (its stdin).
export function pgSession(dataDir) {
  return spawn('psql', ['-X', '-tA', '-d', pgStoreUrl(dataDir)], { stdio: ['pipe', 'pipe', 'pipe'] });
}

// The database of a data directory: its name, from the directory's (unique under the tmp dir).
export function pgDatabase(dataDir) {
  return `parley_${path.basename(dataDir).replace(/[^A-Za-z0-9]/g, '_').toLowerCase()}`;
}

// The --store URL of dataDir's database, created if it does not exist yet.
function pgStoreUrl(dataDir) {
  const db = pgDatabase(dataDir);
  if (pgAdmin(`SELECT 1 FROM pg_database WHERE datname = '${db}'`) !== '1') pgAdmin(`CREATE DATABASE ${db} ENCODING 'UTF8' TEMPLATE template0`);
  return pgAdminUrl.replace('postgresql:///postgres', `postgresql:///${db}`);
}

// PARLEY_TEST_BROKER=redis adds --broker to every chat server: the redis-server on
// PARLEY_TEST_REDIS_PORT (tests/tools/with_redis.sh starts one and sets both). Each start takes
// a DB of its own (counted in DB 0), so servers of different tests, and a server and its restart,
// never see each other as nodes of one chat.
export const onRedis = process.env.PARLEY_TEST_BROKER === 'redis';
const redisPort = process.env.PARLEY_TEST_REDIS_PORT ?? '';
if (onRedis && !/^\d+$/.test(redisPort)) {
  throw new Error('PARLEY_TEST_BROKER=redis needs PARLEY_TEST_REDIS_PORT (see tests/tools/with_redis.sh)');
}

function redisBrokerUrl() {
  const r = spawnSync('redis-cli', ['-p', redisPort, 'INCR', 'parley-test:next-db'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`redis-cli INCR: ${r.stderr || r.error}`);
  const db = 1 + ((Number(r.stdout.trim()) - 1) % 16383); // with_redis.sh gives 16384 DBs
  return `redis://127.0.0.1:${redisPort}/${db}`;
}

// Options every chat test server gets unless it asks otherwise.
export const DEFAULT_ARGS = ['--password-cost', 'min'];

export class ChatServer extends ParleyProcess {
  // Spawns parley on loopback (free ports) with `extraArgs`; resolves once it logs msg=ready.
  // dataDir: reuse an existing data directory (a restart); default a fresh one.
  // tls: a certificate from tests/blackbox/lib/tls.mjs; the HTTP port then speaks HTTPS and wss,
  // and clients of this server trust tls.ca.
  // env: variables added to its environment. bin: another parley binary to run.
  static async start(extraArgs = [], { dataDir, defaults = DEFAULT_ARGS, readyTimeoutMs = READY_TIMEOUT, tls, env, bin } = {}) {
    const dir = dataDir ?? freshDataDir();
    const tlsArgs = tls ? ['--tls-cert', tls.certFile, '--tls-key', tls.keyFile] : [];
    const storeArgs = onPostgres && !extraArgs.includes('--store') ? ['--store', pgStoreUrl(dir)] : [];
    const brokerArgs = onRedis && !extraArgs.includes('--broker') ? ['--broker', redisBrokerUrl()] : [];
    const args = ['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', dir, ...defaults, ...tlsArgs, ...storeArgs, ...brokerArgs, ...extraArgs];
    const { child, exited } = spawnParley(args, { env, bin });
    const server = new ChatServer(child, exited, dir);
    server.args = args;
    server.extraArgs = extraArgs;
    server.tls = tls;
    try {
      await server.waitForLog((l) => l.fields.msg === 'ready', readyTimeoutMs, 'msg=ready');
      if (!server.listening.http || !server.listening.telnet) {
        throw new Error('no msg=listening lines for http and telnet before ready');
      }
    } catch (err) {
      await server.kill();
      if (dataDir === undefined) server.removeData();
      throw new Error(`parley ${args.join(' ')} did not start: ${err.message}\n${server.stderr()}`);
    }
    return server;
  }

  // A new server on the same data directory (this one must have exited), with other options
  // (opts: as start's, e.g. env).
  restart(extraArgs = this.extraArgs ?? [], opts = {}) {
    if (this.running) throw new Error('restart() while the old server still runs');
    return ChatServer.start(extraArgs, { dataDir: this.dataDir, tls: this.tls, ...opts });
  }

  get wsUrl() {
    return `${this.tls ? 'wss' : 'ws'}://127.0.0.1:${this.httpPort}/ws`;
  }

  // Removes the data directory, and on PostgreSQL its database.
  removeData() {
    super.removeData();
    if (onPostgres) pgAdmin(`DROP DATABASE IF EXISTS ${pgDatabase(this.dataDir)} WITH (FORCE)`);
  }

  // Ends the process (SIGKILL if needed) and removes its data directory.
  async dispose() {
    await this.kill();
    this.removeData();
  }
}

// Starts a server with the chat defaults plus `extraArgs`.
export function startChatServer(extraArgs = [], opts = {}) {
  return ChatServer.start(extraArgs, opts);
}

// A server for one test `t` (opts: as ChatServer.start's, e.g. env). server.restartInTest(args,
// opts) starts its successor on the same data directory; every one of them is killed when the
// test ends, and the data directory removed.
export async function serverForTest(t, extraArgs = [], opts = {}) {
  const server = await startChatServer(extraArgs, opts);
  const all = [server];
  server.restartInTest = async (args, nextOpts = {}) => {
    const next = await server.restart(args, nextOpts);
    all.push(next);
    return next;
  };
  t.after(async () => {
    for (const s of all) await s.kill();
    server.removeData();
  });
  return server;
}
