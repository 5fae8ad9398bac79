// lib: what the benchmarks share: starting a server and waiting until it listens, opening many
// connections a batch at a time, and a chat client that logs in and joins a room.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Spawns cmd and resolves {proc, port, out} once its output matches readyPattern (port: group 1).
export function start(cmd, args, readyPattern) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d) => {
      out += d;
      const m = readyPattern.exec(out);
      if (m) resolve({ proc, port: Number(m[1]), out });
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
    proc.on('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${out}`)));
  });
}

// Kills proc (SIGKILL) and resolves once it has exited.
export function killAndWait(proc) {
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  return gone;
}

// A fresh parley (bin, else PARLEY_BIN, else the release build) on free loopback ports with its
// own data directory, no send limit and no per-address limit, plus `args`; resolves once it is
// ready, with its HTTP and telnet ports.
// rooms: public rooms to make before the benchmark's clients come (they log in as guests, and a
// guest's join does not create a room: protocol 1.1 rule 60); a registered user makes them.
// alsoLogged: log fields (e.g. 'msg=broker_up') that must appear too, in any order, before it is ready.
// port and data: those of a server started again (a restart), instead of new ones.
export async function startParley({ bin = process.env.PARLEY_BIN ?? path.join(root, 'build/release/parley'), args = [], rooms = [], alsoLogged = [], port = 0, data = mkdtempSync(path.join(tmpdir(), 'parley-bench-')) } = {}) {
  const also = alsoLogged.map((f) => `(?=[\\s\\S]*${f})`).join('');
  const server = await start(bin, ['--http', `127.0.0.1:${port}`, '--telnet', '127.0.0.1:0', '--data', data,
    '--rate-limit', '0', '--max-conns-per-ip', '0', ...args], new RegExp(`^${also}[\\s\\S]*?transport=http addr=127\\.0\\.0\\.1:(\\d+)[\\s\\S]*msg=ready`));
  server.data = data;
  server.telnetPort = Number(/transport=telnet addr=127\.0\.0\.1:(\d+)/.exec(server.out)[1]);
  if (rooms.length) await openRooms(`${args.includes('--tls-cert') ? 'wss' : 'ws'}://127.0.0.1:${server.port}/ws`, rooms, args);
  return server;
}

// Makes each of rooms exist: a registered user joins it (and leaves). TLS servers: pass their args
// (the certificate is trusted for this one connection only).
export function openRooms(url, rooms, args = []) {
  const cert = args.includes('--tls-cert') ? readFileSync(args[args.indexOf('--tls-cert') + 1]) : undefined;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, cert ? { ca: cert } : {});
    ws.once('error', reject);
    const name = `maker${process.pid}`;
    const password = 'bench-room-maker';
    let next = 0;
    const joinNext = () => {
      if (next === rooms.length) {
        ws.close();
        resolve();
        return;
      }
      ws.send(JSON.stringify({ type: 'join', id: 10 + next, room: rooms[next++] }));
    };
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'register', id: 1, name, password }));
      else if (m.id === 1) ws.send(JSON.stringify({ type: 'login', id: 2, name, password }));
      else if (m.type === 'welcome') joinNext();
      else if (m.type === 'joined') joinNext();
      else if (m.type === 'error') reject(new Error(`room maker: ${data}`));
    });
  });
}

// Opens n connections with open(i), `batch` at a time; resolves with all of them.
export async function openMany(n, open, batch = 200) {
  const all = [];
  for (let i = 0; i < n; i += batch) {
    const some = [];
    for (let j = i; j < Math.min(n, i + batch); j++) some.push(open(j));
    all.push(...(await Promise.all(some)));
  }
  return all;
}

// Opens a WebSocket to url, logs in as guest `name` and joins `room`; resolves with it once
// joined, then hands every later message to onMessage. deflate: offer permessage-deflate (off by
// default, so parley and a peer that does not offer it send the same frames).
export function joinedClient(url, name, room, onMessage, { deflate = false } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: deflate });
    ws.once('error', reject);
    let ready = false;
    ws.on('message', (data) => {
      if (ready) return onMessage(data);
      const m = JSON.parse(data);
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'login', id: 1, name }));
      else if (m.type === 'welcome') ws.send(JSON.stringify({ type: 'join', id: 2, room }));
      else if (m.type === 'joined') {
        ready = true;
        resolve(ws);
      } else if (m.type === 'error') reject(new Error(`${name}: ${data}`));
    });
  });
}
