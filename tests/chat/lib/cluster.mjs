// Several parley nodes on one throwaway PostgreSQL (tests/tools/pg.sh), for the tests of what
// happens across nodes: a page or a load balancer moving from a killed node to another.
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { repoRoot } from '../../blackbox/lib/server.mjs';
import { ChatServer } from './server.mjs';

// n free loopback ports (bound and released, for a process that binds them next).
export async function freePorts(n) {
  const servers = [];
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
  }
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const pgScript = path.join(repoRoot, 'tests', 'tools', 'pg.sh');

// A PostgreSQL server of its own with one empty database for parley: {storeUrl, stop(), dir}
// (dir: the server's directory, for tests/tools/pg.sh).
export function startPostgres() {
  const started = spawnSync(pgScript, ['start'], { encoding: 'utf8' });
  if (started.status !== 0) throw new Error(`pg.sh start: ${started.stderr}`);
  const [dir, adminUrl] = started.stdout.trim().split('\n');
  const stop = () => spawnSync(pgScript, ['stop', dir]);
  const created = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', adminUrl, '-c',
    "CREATE DATABASE parley ENCODING 'UTF8' TEMPLATE template0"], { encoding: 'utf8' });
  if (created.status !== 0) {
    stop();
    throw new Error(`create database: ${created.stderr}`);
  }
  return { storeUrl: adminUrl.replace('postgresql:///postgres', 'postgresql:///parley'), stop, dir };
}

// A cluster of n nodes on storeUrl: free HTTP and telnet ports chosen now, so that every node can
// be started with --peer-urls naming them all (a page from any of them knows the others) and a
// load balancer can be told where they will be; start(i) starts node i (the first to start
// migrates the schema).
export async function planCluster(n, storeUrl, extraArgs = []) {
  const ports = await freePorts(2 * n);
  const httpPorts = ports.slice(0, n);
  const telnetPorts = ports.slice(n);
  const wsUrls = httpPorts.map((p) => `ws://127.0.0.1:${p}/ws`);
  return {
    httpPorts,
    telnetPorts,
    wsUrls,
    start: (i) => ChatServer.start(['--http', `127.0.0.1:${httpPorts[i]}`, '--telnet', `127.0.0.1:${telnetPorts[i]}`,
      '--store', storeUrl, '--node', `node${i + 1}`, '--peer-urls', wsUrls.join(','), ...extraArgs]),
  };
}
