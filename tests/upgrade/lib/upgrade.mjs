// Helpers for the upgrade suites: a server whose processes replace each other (one log: every
// generation writes to the stderr of the first, each line carrying its pid), clients that ride
// through an upgrade the way the protocol says (resume with the token, since and cids), and
// checks on what the store holds.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ChatClient, EVENT_TIMEOUT, eventually, ms, openRoom, withTimeout } from '../../chat/lib/chat.mjs';
import { ChatServer } from '../../chat/lib/server.mjs';
import { TelnetClient } from '../../chat/lib/telnet.mjs';
import { parleyBin } from '../../blackbox/lib/server.mjs';
import { get } from '../../blackbox/lib/http.mjs';
import { httpsGet } from '../../blackbox/lib/tls.mjs';

export { parleyBin };

// How long one upgrade may take from SIGUSR2 to the handover, and an old process to exit after
// its drain time: generous for sanitizer builds on a loaded machine.
export const HANDOVER_TIMEOUT = ms(20000);
export const EXIT_MARGIN = ms(8000);

// True while pid runs (a zombie, which nobody may reap here, counts as gone).
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

// Polls until pid has exited.
export function gone(pid, timeoutMs, what = `pid ${pid} to exit`) {
  return eventually(() => !alive(pid), timeoutMs, what);
}

// A server that can be upgraded: the first process, and every process started after it.
export class Lineage {
  constructor(server) {
    this.server = server;
    this.pids = new Set([server.pid]);
    this.current = server.pid;
  }

  // Starts the first process with `args` (the chat defaults come too).
  static async start(t, args = [], opts = {}) {
    const server = await ChatServer.start(args, opts);
    const lineage = new Lineage(server);
    t?.after(() => lineage.dispose());
    return lineage;
  }

  get dataDir() {
    return this.server.dataDir;
  }

  // Log lines (parsed) of one process, or of all.
  lines(pid) {
    const all = this.server.logLines();
    return pid === undefined ? all : all.filter((l) => l.fields.pid === String(pid));
  }

  // The first line (past or future) of process pid (null: any) with msg and fields matching
  // `extra`. Polls the log: the first process may have exited (its successors write on).
  async waitLog(pid, msg, extra = {}, timeoutMs = HANDOVER_TIMEOUT) {
    const match = (l) =>
      (pid === null || l.fields.pid === String(pid)) &&
      l.fields.msg === msg &&
      Object.entries(extra).every(([k, v]) => l.fields[k] === String(v));
    try {
      return await eventually(() => this.server.logLines().find(match), timeoutMs, `msg=${msg} from pid ${pid}`);
    } catch (err) {
      throw new Error(`${err.message}\n--- the log ---\n${this.server.tail(60)}`);
    }
  }

  // The pid an upgrade of process `pid` started (its msg=upgrade_started line).
  async childOf(pid, timeoutMs = HANDOVER_TIMEOUT) {
    const line = await this.waitLog(pid, 'upgrade_started', {}, timeoutMs);
    const child = Number(line.text.match(/msg=upgrade_started new_pid=(\d+)/)[1]);
    this.pids.add(child);
    return child;
  }

  signal(sig, pid = this.current) {
    process.kill(pid, sig);
  }

  // SIGUSR2 to the serving process; resolves once it has handed over: {oldPid, newPid}.
  async upgrade({ timeoutMs = HANDOVER_TIMEOUT } = {}) {
    const oldPid = this.current;
    const before = this.lines(oldPid).filter((l) => l.fields.msg === 'upgrade_started').length;
    this.signal('SIGUSR2', oldPid);
    await eventually(
      () => this.lines(oldPid).filter((l) => l.fields.msg === 'upgrade_started').length > before,
      timeoutMs,
      `pid ${oldPid} to start an upgrade`,
    );
    const started = this.lines(oldPid).filter((l) => l.fields.msg === 'upgrade_started')[before];
    const newPid = Number(started.text.match(/msg=upgrade_started new_pid=(\d+)/)[1]);
    this.pids.add(newPid);
    await this.waitLog(oldPid, 'upgrade_handed_over', { new_pid: newPid }, timeoutMs).catch(async (err) => {
      throw new Error(`${err.message}\n(log of the new process:\n${this.lines(newPid).map((l) => l.text).join('\n')})`);
    });
    this.current = newPid;
    return { oldPid, newPid };
  }

  async healthz() {
    const port = this.server.httpPort;
    const res = this.server.tls ? await httpsGet(port, '/healthz', { ca: this.server.tls.ca }) : await get(port, '/healthz');
    return { status: res.status, ...JSON.parse(res.text ?? res.body) };
  }

  // Stops the serving process (SIGTERM: a sanitizer build then checks it for leaks), kills every
  // other process of the line, removes the data directory, and fails if any process of the line
  // reported a sanitizer error or a leak.
  async dispose() {
    this.disposed = true; // riders stop
    try {
      if (alive(this.current)) {
        process.kill(this.current, 'SIGTERM');
        await gone(this.current, ms(10000)).catch(() => {});
      }
    } catch {
      // gone already
    }
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await this.server.kill();
    this.server.removeData();
    const report = this.server.stderr().match(/^.*(AddressSanitizer|LeakSanitizer|runtime error:).*$/m);
    if (report) throw new Error(`a process of the line reported: ${report[0]}\n${this.server.tail(40)}`);
  }
}

// The notify_sink helper built beside the parley binary under test (make unit).
export function notifySinkBin() {
  return path.join(path.dirname(parleyBin), 'tests', 'notify_sink');
}

// Connects to the telnet port again and again until stopped, each time waiting for the
// greeting: counts connections that were refused, reset or never greeted. Also GETs /healthz.
export function tightConnector(port, httpPort) {
  const state = { ok: 0, failed: [], running: true };
  const once = () =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      let greeted = false;
      const timer = setTimeout(() => socket.destroy(new Error('no greeting within 10 s')), ms(10000));
      socket.on('data', (d) => {
        if (d.toString('latin1').includes('Welcome to parley')) {
          greeted = true;
          socket.destroy();
        }
      });
      socket.on('error', (err) => {
        if (!greeted) state.failed.push(`telnet: ${err.code || err.message}`);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (greeted) state.ok += 1;
        else if (!state.failed.length || !state.failed.at(-1).startsWith('telnet')) state.failed.push('telnet: closed before the greeting');
        resolve();
      });
    });
  const http = async () => {
    try {
      const res = await get(httpPort, '/healthz');
      if (res.status !== 200) state.failed.push(`healthz: ${res.status}`);
      else state.ok += 1;
    } catch (err) {
      state.failed.push(`healthz: ${err.code || err.message}`);
    }
  };
  state.done = (async () => {
    while (state.running) {
      await once();
      await http();
    }
  })();
  state.stop = async () => {
    state.running = false;
    await state.done;
  };
  return state;
}

// A WebSocket user who rides through upgrades as the protocol says: when the server closes the
// connection (1012 in a drain), it reconnects, logs in with its token, joins each room again
// with `since` its last seq there, and sends again, with the same cid, what was not acked.
export class Rider {
  constructor(lineage, name, rooms) {
    this.lineage = lineage;
    this.name = name;
    this.rooms = rooms;
    this.seen = new Map(rooms.map((r) => [r, []])); // room -> seqs received, in order
    this.start = new Map(); // room -> the room's latest seq at the first join
    this.acks = new Map(); // cid -> {room, seq}
    this.closes = []; // close codes received
    this.reconnects = 0;
    this.running = true;
    this.problems = [];
  }

  last(room) {
    const s = this.seen.get(room);
    return s.length ? s[s.length - 1] : this.start.get(room);
  }

  #attach(client) {
    this.client = client;
    client.ignore = (m) => {
      if (m.type === 'message' && this.seen.has(m.room)) {
        this.seen.get(m.room).push(m.seq);
        return true;
      }
      return m.type === 'presence' || m.type === 'typing';
    };
    client.closed.then((info) => {
      if (this.client === client) this.closes.push(info.code);
    });
  }

  async connect() {
    const client = await ChatClient.connect(this.lineage.server, { label: this.name, timeoutMs: ms(10000) });
    this.#attach(client);
    if (!this.token) {
      const welcome = await client.login(this.name);
      this.token = welcome.token;
      for (const room of this.rooms) {
        await openRoom(this.lineage.server, null, room); // a guest does not create rooms (rule 60)
        const joined = await client.join(room);
        this.start.set(room, joined.seq);
      }
    } else {
      await client.loginToken(this.token);
      for (const room of this.rooms) await client.join(room, this.last(room));
    }
    this.ready = true;
  }

  // Reconnects until it works (the server may be between processes, or restarting itself).
  async reconnect() {
    this.ready = false;
    this.reconnects += 1;
    const deadline = Date.now() + ms(30000);
    for (;;) {
      if (this.lineage.disposed) throw new Error(`${this.name}: the test is over`);
      try {
        await this.connect();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${this.name}: could not reconnect: ${err.message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  // Sends text with cid until acked, reconnecting as often as it takes.
  async sendOnce(room, text, cid) {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 50) throw new Error(`${this.name}: ${cid} never acked`);
      if (!this.client.isOpen) await this.reconnect();
      try {
        const reply = await this.client.request({ type: 'send', room, text, cid }, { timeoutMs: ms(15000) });
        if (reply.type === 'ack') {
          this.acks.set(cid, { room, seq: reply.seq });
          return reply;
        }
        this.problems.push(`${cid}: ${JSON.stringify(reply)}`);
      } catch (err) {
        if (this.client.isOpen) throw err;
      }
    }
  }

  // Sends one message after another (paced by `pauseMs`) until stop().
  run(pauseMs = 150) {
    let k = 0;
    this.loop = (async () => {
      while (this.running && !this.lineage.disposed) {
        k += 1;
        const room = this.rooms[k % this.rooms.length];
        await this.sendOnce(room, `${this.name} says ${k}`, `${this.name}-${k}`);
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    })();
    this.loop.catch(() => {}); // reported by stop(); not an unhandled rejection if a test fails first
    return this.loop;
  }

  async stop() {
    this.running = false;
    await this.loop;
    if (!this.client.isOpen) await this.reconnect();
    await this.client.sync();
  }
}

// A telnet user who rides through upgrades: on the restart notice and close, it connects again
// under the same name. Lines it sends are its messages; one it saw echoed back was stored.
export class TelnetRider {
  constructor(lineage, name, room) {
    this.lineage = lineage;
    this.name = name;
    this.room = room;
    this.echoed = new Set();
    this.notices = 0;
    this.reconnects = 0;
    this.running = true;
  }

  async connect() {
    const tn = await TelnetClient.connect(this.lineage.server, `telnet ${this.name}`, ms(10000));
    this.tn = tn;
    await tn.waitPrompt(/Your name\? $/, ms(10000), 'the name prompt');
    await tn.send(this.name);
    await tn.nextLine(/joined #general/, ms(10000), 'the login notice');
    await openRoom(this.lineage.server, null, this.room);
    await tn.send(`/join ${this.room}`);
    await tn.nextLine(new RegExp(`You joined #${this.room}`), ms(10000), 'the join notice');
  }

  async reconnect() {
    this.reconnects += 1;
    const deadline = Date.now() + ms(30000);
    for (;;) {
      if (this.lineage.disposed) throw new Error(`${this.name}: the test is over`);
      try {
        await this.connect();
        return;
      } catch (err) {
        this.tn?.destroy();
        if (Date.now() > deadline) throw new Error(`${this.name}: could not reconnect: ${err.message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  run(pauseMs = 200) {
    let k = 0;
    this.loop = (async () => {
      while (this.running && !this.lineage.disposed) {
        k += 1;
        const text = `${this.name} types ${k}`;
        const tn = this.tn;
        try {
          await tn.send(text);
          await tn.nextLine((l) => l.endsWith(`${this.name}: ${text}`), ms(15000), `the echo of ${text}`);
          this.echoed.add(text);
        } catch {
          // Cut off (the drain's notice and close): the line may or may not have been stored.
          if (tn.pendingLines().some((l) => l.startsWith('* The server is restarting'))) this.notices += 1;
          tn.destroy();
          await this.reconnect();
        }
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    })();
    this.loop.catch(() => {});
    return this.loop;
  }

  async stop() {
    this.running = false;
    await this.loop;
    this.tn.destroy();
  }
}

// Every message of room, oldest first, read through a fresh connection (history pages).
export async function roomHistory(lineage, room) {
  const reader = await ChatClient.connect(lineage.server, { label: 'auditor' });
  try {
    await reader.login(`audit${Math.floor(Math.random() * 1e9)}`);
    const all = [];
    let before;
    for (;;) {
      const req = { type: 'history', room, limit: 200 };
      if (before !== undefined) req.before = before;
      const page = await reader.expect(req, 'history', { timeoutMs: EVENT_TIMEOUT });
      all.unshift(...page.messages);
      if (page.messages.length < 200) break;
      before = page.messages[0].seq;
    }
    return all;
  } finally {
    await reader.close();
  }
}

// Every acked message of riders is in the store exactly once, under the seq of its ack.
export async function assertAckedStored(lineage, riders, room) {
  const history = await roomHistory(lineage, room);
  const byCid = new Map();
  for (const m of history) {
    if (!m.cid) continue;
    assert.ok(!byCid.has(`${m.from}/${m.cid}`), `cid ${m.cid} of ${m.from} stored twice`);
    byCid.set(`${m.from}/${m.cid}`, m.seq);
  }
  let n = 0;
  for (const r of riders) {
    for (const [cid, ack] of r.acks) {
      if (ack.room !== room) continue;
      assert.equal(byCid.get(`${r.name}/${cid}`), ack.seq, `acked ${cid} (seq ${ack.seq}) is not in the store under that seq`);
      n += 1;
    }
  }
  assertRun(history.map((m) => m.seq), 0, history.length, `the store's seqs of ${room}`);
  return n;
}

// Asserts that seqs is exactly from+1..to in order.
export function assertRun(seqs, from, to, what) {
  const bad = [];
  for (let i = 0; i < seqs.length && bad.length < 5; i++) {
    if (seqs[i] !== from + 1 + i) bad.push(`#${i}: ${seqs[i]} (expected ${from + 1 + i})`);
  }
  assert.equal(seqs.length, to - from, `${what}: ${seqs.length} messages, expected ${to - from} (${from + 1}..${to}); first wrong: ${bad.join(', ')}`);
  assert.deepEqual(bad, [], `${what}: not every seq exactly once in order`);
}

export { withTimeout };
