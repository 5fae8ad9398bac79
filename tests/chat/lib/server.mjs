// Starts parley for the chat suites: fast password hashing, restarts on the same --data dir,
// SIGKILL that keeps the data (unlike the black-box helper's kill, which removes it).
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import {
  EXIT_TIMEOUT,
  READY_TIMEOUT,
  freshDataDir,
  parleyBin,
  parseLogfmt,
  portOf,
} from '../../blackbox/lib/server.mjs';
import { withTimeout } from '../../blackbox/lib/util.mjs';

export { freshDataDir, parleyBin };

// Options every chat test server gets unless it asks otherwise.
export const DEFAULT_ARGS = ['--password-cost', 'min'];

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export class ChatServer {
  #stderr = '';
  #lines = [];
  #watchers = new Set();

  constructor(child, args, dataDir) {
    this.proc = child;
    this.pid = child.pid;
    this.args = args;
    this.dataDir = dataDir;
    this.listening = {};
    this.exitInfo = null;
    this.exited = new Promise((resolve) => {
      child.on('error', (error) => resolve({ code: null, signal: null, error: error.message }));
      child.on('exit', (code, signal) => resolve({ code, signal }));
    }).then((info) => {
      liveChildren.delete(child);
      this.exitInfo = info;
      for (const w of this.#watchers) w(null);
      return info;
    });
    let partial = '';
    child.stdout.resume();
    child.stderr.on('data', (chunk) => {
      this.#stderr += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const text of lines) {
        const line = { text, fields: parseLogfmt(text) };
        this.#lines.push(line);
        const f = line.fields;
        if (f.msg === 'listening' && f.transport && f.addr) this.listening[f.transport] = f.addr;
        for (const w of this.#watchers) w(line);
      }
    });
  }

  // Spawns parley on loopback (free ports) with `extraArgs`; resolves once it logs msg=ready.
  // dataDir: reuse an existing data directory (a restart); default a fresh one.
  static async start(extraArgs = [], { dataDir, defaults = DEFAULT_ARGS, readyTimeoutMs = READY_TIMEOUT } = {}) {
    const dir = dataDir ?? freshDataDir();
    const args = ['--http', '127.0.0.1:0', '--telnet', '127.0.0.1:0', '--data', dir, ...defaults, ...extraArgs];
    const child = spawn(parleyBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(child);
    const server = new ChatServer(child, args, dir);
    server.extraArgs = extraArgs;
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
    return ChatServer.start(extraArgs, { dataDir: this.dataDir });
  }

  get running() {
    return this.exitInfo === null;
  }

  get httpPort() {
    return portOf(this.listening.http);
  }

  get telnetPort() {
    return portOf(this.listening.telnet);
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.httpPort}/ws`;
  }

  stderr() {
    return this.#stderr;
  }

  // Last `n` lines of the server log, for failure messages.
  tail(n = 30) {
    return this.#lines.slice(-n).map((l) => l.text).join('\n');
  }

  waitForLog(pred, timeoutMs, what) {
    const found = this.#lines.find(pred);
    if (found) return Promise.resolve(found);
    let watcher;
    const match = new Promise((resolve, reject) => {
      watcher = (line) => {
        if (line === null) reject(new Error(`parley exited (${JSON.stringify(this.exitInfo)}) before logging ${what}`));
        else if (pred(line)) resolve(line);
      };
      this.#watchers.add(watcher);
    });
    return withTimeout(match, timeoutMs, `log line ${what}`).finally(() => this.#watchers.delete(watcher));
  }

  // SIGKILL; the data directory stays for a restart.
  async kill() {
    if (this.running) this.proc.kill('SIGKILL');
    return this.exited;
  }

  // SIGTERM and wait; SIGKILL if it does not exit in time. The data directory stays.
  async stop(timeoutMs = EXIT_TIMEOUT) {
    if (this.running) this.proc.kill('SIGTERM');
    try {
      return await withTimeout(this.exited, timeoutMs, 'parley to exit after SIGTERM');
    } catch (err) {
      await this.kill();
      throw err;
    }
  }

  removeData() {
    rmSync(this.dataDir, { recursive: true, force: true });
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
