// A throwaway redis-server for the tests (Debian's redis-server package): loopback, a free
// port, no persistence, killed by stop() (and with the test process, which owns it).
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';

// A TCP port nobody listens on right now (a start that loses it to a race tries again).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Starts redis-server; resolves with { port, url, cli(...args), stop() } once it accepts
// connections. databases: how many DBs it has (a test server may take one of its own).
export async function startRedis({ databases = 16 } = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--databases', String(databases)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const ready = await new Promise((resolve) => {
      const onData = (d) => {
        out += d;
        if (out.includes('Ready to accept connections')) resolve(true);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => resolve(false));
      child.once('error', () => resolve(false));
    });
    if (!ready) {
      if (/Address already in use/.test(out)) continue;
      throw new Error(`redis-server did not start (scripts/setup.sh --test installs it):\n${out}`);
    }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      // Runs one redis-cli command on DB 0; its output, trimmed.
      cli: (...args) => {
        const r = spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr}`);
        return r.stdout.trim();
      },
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
      },
    };
  }
  throw new Error('redis-server: no free port after 5 attempts');
}
