// search_index: what the full-text index costs, in one run: N messages (ten words each, 50 sends
// in flight, one connection) into a fresh parley, then a search for a common word at the
// --search-scan cap, then the database's tables by size (SQLite's dbstat, read with the sqlite3
// CLI after parley stops): the index's share of the file.
//   node bench/search_index.mjs [messages]   (default 20000)
// PARLEY_BIN=... runs another binary (one without search has no search_* tables, and answers the
// search with an error: its send rate is then the peer to compare with in the same run).
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { startParley } from './lib.mjs';

const N = Number(process.argv[2] ?? 20000);
const words = 'the deploy release friday monday team build server client message search index room user admin error fix test review merge branch commit docs'.split(' ');
let seed = 1;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed; };
const text = () => Array.from({ length: 10 }, () => words[rnd() % words.length] + (rnd() % 50)).join(' ');

const server = await startParley({ args: ['--password-cost', 'min'] });
const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
const pending = new Map();
let nextId = 1;
ws.on('message', (d) => {
  const m = JSON.parse(d.toString());
  if (m.id !== undefined && pending.has(m.id)) {
    pending.get(m.id)(m);
    pending.delete(m.id);
  }
});
await new Promise((resolve) => ws.once('open', resolve));
const request = (o) => new Promise((resolve) => {
  const id = nextId++;
  pending.set(id, resolve);
  ws.send(JSON.stringify({ ...o, id }));
});
await request({ type: 'register', name: 'bench', password: 'correct-horse-9' });
await request({ type: 'login', name: 'bench', password: 'correct-horse-9' });
await request({ type: 'join', room: 'general' });
const t0 = performance.now();
let sent = 0;
async function sender() {
  while (sent < N) {
    sent++;
    const a = await request({ type: 'send', room: 'general', text: text() });
    if (a.type !== 'ack') throw new Error(JSON.stringify(a));
  }
}
await Promise.all(Array.from({ length: 50 }, sender));
const sendSeconds = (performance.now() - t0) / 1000;
const t1 = performance.now();
const r = await request({ type: 'search', q: 'deploy10 fri*', limit: 100 });
const searchMs = performance.now() - t1;
ws.terminate();
server.proc.kill('SIGTERM');
await new Promise((resolve) => server.proc.once('exit', resolve));

const db = path.join(server.data, 'parley.db');
const rows = execFileSync('sqlite3', [db, 'SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC;'])
  .toString().trim().split('\n').map((l) => l.split('|'));
const total = statSync(db).size;
const search = rows.filter(([name]) => name.startsWith('search_')).reduce((s, [, b]) => s + Number(b), 0);
console.log(`${N} sends in ${sendSeconds.toFixed(2)} s (${(N / sendSeconds).toFixed(0)}/s)`);
console.log(`search "deploy10 fri*" limit 100: ${r.type === 'search' ? `${r.results.length} results${r.next ? ', next' : ''}` : r.code} in ${searchMs.toFixed(1)} ms`);
console.log(`parley.db ${(total / 1e6).toFixed(1)} MB, search tables ${(search / 1e6).toFixed(1)} MB (${((100 * search) / total).toFixed(0)}%)`);
for (const [name, bytes] of rows) console.log(`  ${name.padEnd(28)} ${(Number(bytes) / 1e6).toFixed(2)} MB`);
