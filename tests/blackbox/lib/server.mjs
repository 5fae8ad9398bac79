// Spawns the real parley binary (PARLEY_BIN) on loopback and follows its logfmt log on stderr.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ms, withTimeout } from './util.mjs';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const parleyBin = path.resolve(
  repoRoot,
  process.env.PARLEY_BIN || 'build/release/parley',
);

export const READY_TIMEOUT = ms(15000);
export const EXIT_TIMEOUT = ms(10000);

// Every child still running when this test process exits is killed.
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

// Parses one logfmt line (`k=v k2="quoted \"v\""`) into an object of strings.
export function parseLogfmt(line) {
  const fields = {};
  for (const m of line.matchAll(/([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    let value = m[2];
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value);
      } catch {
        value = value.slice(1, -1);
      }
    }
    fields[m[1]] = value;
  }
  return fields;
}

// Port number at the end of "127.0.0.1:41234" or "[::1]:41234".
export function portOf(addr) {
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in address '${addr}'`);
  return port;
}

export function freshDataDir() {
  return mkdtempSync(path.join(os.tmpdir(), 'parley-bb-'));
}

// Spawns parley (through `ulimit -n N` when asked) with stdout/stderr captured.
// bin: another parley binary to run (an older build, for upgrades between versions).
export function spawnParley(args, { env, ulimitNofile, bin = parleyBin } = {}) {
  const options = { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } };
  const child =
    ulimitNofile === undefined
      ? spawn(bin, args, options)
      : spawn(
          'bash',
          ['-c', `ulimit -n ${Number(ulimitNofile)} && exec "$0" "$@"`, bin, ...args],
          options,
        );
  liveChildren.add(child);
  const exited = new Promise((resolve) => {
    child.on('error', (error) => resolve({ code: null, signal: null, error: error.message }));
    child.on('exit', (code, signal) => resolve({ code, signal }));
  }).finally(() => liveChildren.delete(child));
  return { child, exited };
}

// Runs parley to completion: {code, signal, stdout, stderr}. Kills it after timeoutMs.
export async function runParley(args, { env, timeoutMs = EXIT_TIMEOUT } = {}) {
  const { child, exited } = spawnParley(args, { env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const result = await withTimeout(exited, timeoutMs, `parley ${args.join(' ')} to exit`);
    return { ...result, stdout, stderr };
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${err.message}; it kept running. stderr:\n${stderr}`);
  }
}

// A running parley: its log (parsed logfmt lines, awaitable), its listening ports, stop and kill.
// What happens to its data directory is the subclass's business.
export class ParleyProcess {
  #stderr = '';
  #lines = [];
  #lineWatchers = new Set();

  constructor(child, exited, dataDir) {
    this.proc = child;
    this.pid = child.pid;
    this.dataDir = dataDir;
    this.exitInfo = null;
    this.exited = exited.then((info) => {
      this.exitInfo = info;
      return info;
    });
    this.listening = {};
    let partial = '';
    child.stdout.resume();
    child.stderr.on('data', (chunk) => {
      this.#stderr += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) this.#onLine(line);
    });
  }

  #onLine(text) {
    const line = { text, fields: parseLogfmt(text) };
    this.#lines.push(line);
    if (line.fields.msg === 'listening' && line.fields.transport && line.fields.addr) {
      this.listening[line.fields.transport] = line.fields.addr;
    }
    for (const watcher of this.#lineWatchers) watcher(line);
  }

  get running() {
    return this.exitInfo === null;
  }

  stderr() {
    return this.#stderr;
  }

  logLines() {
    return this.#lines.slice();
  }

  // Last `n` lines of the log, for failure messages.
  tail(n = 30) {
    return this.#lines.slice(-n).map((l) => l.text).join('\n');
  }

  // Resolves with the first log line (past or future) for which pred({text, fields}) holds.
  waitForLog(pred, timeoutMs, what) {
    const found = this.#lines.find(pred);
    if (found) return Promise.resolve(found);
    let watcher;
    const match = new Promise((resolve, reject) => {
      watcher = (line) => pred(line) && resolve(line);
      this.#lineWatchers.add(watcher);
      this.exited.then((info) =>
        reject(new Error(`parley exited (${JSON.stringify(info)}) before logging ${what}`)),
      );
    });
    return withTimeout(match, timeoutMs, `log line: ${what}`)
      .catch((err) => {
        throw new Error(`${err.message}\n--- parley stderr ---\n${this.#stderr}`);
      })
      .finally(() => this.#lineWatchers.delete(watcher));
  }

  get httpPort() {
    return portOf(this.listening.http);
  }

  get telnetPort() {
    return portOf(this.listening.telnet);
  }

  get url() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  // Sends `signal` and waits for exit; SIGKILLs and throws if it does not exit in time.
  async stop({ signal = 'SIGTERM', timeoutMs = EXIT_TIMEOUT } = {}) {
    if (this.running) this.proc.kill(signal);
    try {
      return await withTimeout(this.exited, timeoutMs, `parley to exit after ${signal}`);
    } catch (err) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`${err.message}\n--- parley stderr ---\n${this.#stderr}`);
    }
  }

  async kill() {
    if (this.running) this.proc.kill('SIGKILL');
    return this.exited;
  }

  removeData() {
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

// A black-box test server: its fresh data directory goes with it when it stops.
class ParleyServer extends ParleyProcess {
  wsUrl(pathname) {
    return `ws://127.0.0.1:${this.httpPort}${pathname}`;
  }

  async stop(opts) {
    try {
      return await super.stop(opts);
    } finally {
      this.removeData();
    }
  }

  async kill() {
    const info = await super.kill();
    this.removeData();
    return info;
  }
}

// Starts parley on 127.0.0.1 (free ports) with a fresh data dir; resolves once it logs msg=ready.
export async function startServer(
  extraArgs = [],
  { env, ulimitNofile, http = '127.0.0.1:0', telnet = '127.0.0.1:0', readyTimeoutMs = READY_TIMEOUT } = {},
) {
  const dataDir = freshDataDir();
  const args = ['--http', http, '--telnet', telnet, '--data', dataDir, ...extraArgs];
  const { child, exited } = spawnParley(args, { env, ulimitNofile });
  const server = new ParleyServer(child, exited, dataDir);
  try {
    await server.waitForLog((l) => l.fields.msg === 'ready', readyTimeoutMs, 'msg=ready');
    for (const transport of ['http', 'telnet']) {
      if (!server.listening[transport]) {
        throw new Error(
          `no 'msg=listening transport=${transport} addr=...' line before ready\n${server.stderr()}`,
        );
      }
    }
  } catch (err) {
    await server.kill();
    throw new Error(`parley ${args.join(' ')} did not start: ${err.message}`);
  }
  return server;
}
