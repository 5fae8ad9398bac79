// Starts parley for the chat suites: fast password hashing, restarts on the same --data dir,
// SIGKILL that keeps the data (unlike the black-box helper's kill, which removes it).
import {
  ParleyProcess,
  READY_TIMEOUT,
  freshDataDir,
  parleyBin,
  spawnParley,
} from '../../blackbox/lib/server.mjs';

export { freshDataDir, parleyBin };

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
    const args = ['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', dir, ...defaults, ...tlsArgs, ...extraArgs];
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

  // A new server on the same data directory (this one must have exited), with other options.
  restart(extraArgs = this.extraArgs ?? []) {
    if (this.running) throw new Error('restart() while the old server still runs');
    return ChatServer.start(extraArgs, { dataDir: this.dataDir, tls: this.tls });
  }

  get wsUrl() {
    return `${this.tls ? 'wss' : 'ws'}://127.0.0.1:${this.httpPort}/ws`;
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

// A server for one test `t`. server.restartInTest(args) starts its successor on the same data
// directory; every one of them is killed when the test ends, and the data directory removed.
export async function serverForTest(t, extraArgs = []) {
  const server = await startChatServer(extraArgs);
  const all = [server];
  server.restartInTest = async (args) => {
    const next = await server.restart(args);
    all.push(next);
    return next;
  };
  t.after(async () => {
    for (const s of all) await s.kill();
    server.removeData();
  });
  return server;
}
