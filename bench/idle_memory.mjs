// idle_memory: resident memory one idle WebSocket costs parley, beside a Node `ws` server, in one run.
//   node bench/idle_memory.mjs [connections]   (default 5000; `make bench` runs it)
// Each server is started fresh; its VmRSS is read from /proc before and after opening the
// connections (each waits for its first message, then stays idle). Socket buffers are kernel
// memory and not in VmRSS, so the figure is the server's own user-space cost per connection.
// The TLS rows do the same over wss:// with a certificate made for the run (EC P-256), the peer
// then being the same Node `ws` server on https with that certificate.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { certDir, makeCert } from '../tests/blackbox/lib/tls.mjs';
import { openMany, root, start, startParley } from './lib.mjs';

const count = Number(process.argv[2] ?? 5000);

function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

// Opens one WebSocket (trusting `ca` over wss) and resolves once the server has answered enough.
function openOne(url, chat, i, ca) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca });
    ws.once('error', reject);
    if (!chat) {
      ws.once('message', () => resolve(ws));
      return;
    }
    // A chat client: logged in as a guest and joined to one of 100 rooms, then idle. (All in one
    // room would measure the presence storm of n joins, n^2/2 events, not a connection's cost.)
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'login', id: 1, name: `idle${i}` }));
      if (m.type === 'welcome') ws.send(JSON.stringify({ type: 'join', id: 2, room: `room${i % 100}` }));
      if (m.type === 'joined') resolve(ws);
    });
  });
}

// A telnet user: answers the name prompt as a guest and waits for the automatic join of #general.
function openTelnet(port, i) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('error', reject);
    let seen = '';
    socket.on('data', (data) => {
      seen += data.toString('latin1');
      if (seen.endsWith('Your name? ')) socket.write(`tn${i}\r\n`);
      else if (/joined #general/.test(seen)) {
        socket.removeAllListeners('data');
        socket.on('data', () => {}); // presence of later users: read and dropped
        resolve(socket);
      }
    });
  });
}

// Opens `count` connections with open(i), waits for the server to settle, and reports the growth
// of its VmRSS per connection.
async function measure(name, server, open, what = 'idle WebSocket') {
  const before = rssKiB(server.proc.pid);
  const conns = await openMany(count, open);
  await new Promise((r) => setTimeout(r, 500)); // let the server finish its turn
  const after = rssKiB(server.proc.pid);
  for (const c of conns) (c.terminate ?? c.destroy).call(c);
  server.proc.kill('SIGKILL');
  const perConn = ((after - before) * 1024) / count;
  console.log(`${name.padEnd(24)} rss before ${before} KiB, after ${after} KiB: ${perConn.toFixed(0)} bytes per ${what}`);
  return perConn;
}

const ws = (server, wsPath, chat = false) => (i) => openOne(`ws://127.0.0.1:${server.port}${wsPath}`, chat, i);
const wss = (server, wsPath, ca, chat = false) => (i) =>
  openOne(`wss://127.0.0.1:${server.port}${wsPath}`, chat, i, ca);
let server = await startParley();
const parleyBytes = await measure('parley /ws (greeted)', server, ws(server, '/ws'));
const ROOMS = Array.from({ length: 100 }, (_, i) => `room${i}`); // made first: guests do not create rooms
server = await startParley({ rooms: ROOMS });
const chatBytes = await measure('parley chat client', server, ws(server, '/ws', true));
// Telnet users all land in #general, so this row includes the presence of n joins to one room.
server = await startParley();
const telnetBytes = await measure('parley telnet user', server, (i) => openTelnet(server.telnetPort, i), 'idle telnet user');
const peer = await start(process.execPath, [path.join(root, 'bench/peers/ws_server.mjs')], /port=(\d+)/);
const peerBytes = await measure('node ws 8 (peer)', peer, ws(peer, '/'));
console.log(`idle WebSockets: ${count} each`);
console.log(`greeted WebSocket: parley uses ${(parleyBytes / peerBytes).toFixed(3)}x the peer's memory per connection`);
console.log(`logged-in chat client in one room (guest, 100 rooms): ${chatBytes.toFixed(0)} bytes, ${(chatBytes / peerBytes).toFixed(3)}x the peer's bare WebSocket`);
console.log(`logged-in telnet user in #general (guest): ${telnetBytes.toFixed(0)} bytes, ${(telnetBytes / peerBytes).toFixed(3)}x the peer's bare WebSocket`);

// TLS: the same rows over wss://, beside the peer on https with the same certificate.
const dir = certDir();
const cert = makeCert(dir.dir, 'bench');
const tlsArgs = ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile];
server = await startParley({ args: tlsArgs });
const tlsBytes = await measure('parley /ws over TLS', server, wss(server, '/ws', cert.ca), 'idle TLS WebSocket');
server = await startParley({ args: tlsArgs, rooms: ROOMS });
const tlsChatBytes = await measure('parley chat client, TLS', server, wss(server, '/ws', cert.ca, true), 'idle TLS chat client');
const tlsPeer = await start(process.execPath, [path.join(root, 'bench/peers/ws_server.mjs'), ...tlsArgs], /port=(\d+)/);
const tlsPeerBytes = await measure('node ws 8 on https (peer)', tlsPeer, wss(tlsPeer, '/', cert.ca), 'idle TLS WebSocket');
dir.remove();
console.log(`greeted WebSocket over TLS: ${tlsBytes.toFixed(0)} bytes, parley uses ${(tlsBytes / tlsPeerBytes).toFixed(3)}x the peer's memory per connection (plain: ${parleyBytes.toFixed(0)})`);
console.log(`logged-in chat client over TLS: ${tlsChatBytes.toFixed(0)} bytes, ${(tlsChatBytes / tlsPeerBytes).toFixed(3)}x the peer's bare TLS WebSocket (plain: ${chatBytes.toFixed(0)})`);
