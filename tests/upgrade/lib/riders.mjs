// Light clients for the live load test, on raw sockets so that hundreds fit in one test process
// and each can cut a message in two (a WebSocket frame, a telnet line) around an upgrade. Each
// sends continuously in one room, one message at a time (WebSocket with a cid, acknowledged;
// telnet, echoed), records every message of its room it receives, and counts every close.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { encodeFrame, parseFrame, OP } from '../../blackbox/lib/rawws.mjs';
import { ms } from '../../chat/lib/chat.mjs';

const LINE_END = Buffer.from('\r\n');
// How long a send may wait for its ack (or a telnet line for its echo) before it counts as lost:
// far beyond any upgrade's pause, so that a lost reply fails the test instead of hanging it.
const REPLY_MS = ms(60000);

// A WebSocket chat client that logs in as a guest and joins one room (which must exist: guests
// do not create rooms, protocol 1.1 rule 60; the test makes it first, openRoom).
export class WsRider {
  constructor(port, name, room) {
    this.port = port;
    this.name = name;
    this.room = room;
    this.seqs = []; // seqs of the room's messages received, in order
    this.acks = new Map(); // cid -> seq
    this.problems = []; // errors, closes, unexpected replies
    this.closed = false;
    this.sent = 0;
    this.nextId = 1;
    this.pending = new Map(); // id -> resolve
    this.buf = Buffer.alloc(0);
    this.running = false;
    // While a frame is half out (cut around an upgrade), the frames this client would write
    // meanwhile (pongs) wait here for its second half: bytes of another frame inside it would be
    // read as its payload (RFC 6455 5.4 lets a control frame come between the frames of a message,
    // never inside one). null: no frame is half out.
    this.waiting = null;
    this.pongsDeferred = 0; // pongs that waited for the second half of a frame
    this.pingWaiters = [];
  }

  async connect() {
    const socket = net.connect({ port: this.port, host: '127.0.0.1' });
    this.socket = socket;
    socket.setNoDelay(true);
    const key = randomBytes(16).toString('base64');
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    let head = Buffer.alloc(0);
    await new Promise((resolve, reject) => {
      const onData = (d) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        if (!head.subarray(0, 12).toString().includes('101')) reject(new Error(`${this.name}: upgrade refused`));
        this.buf = head.subarray(end + 4);
        resolve();
      };
      socket.on('data', onData);
      socket.once('error', reject);
    });
    socket.on('data', (d) => this.#onData(d));
    socket.on('error', (err) => this.problems.push(`${this.name}: socket error ${err.code || err.message}`));
    socket.on('close', () => {
      this.closed = true;
      if (!this.quitting) this.problems.push(`${this.name}: connection closed`);
      for (const resolve of this.pending.values()) resolve(null);
      this.pending.clear();
      for (const resolve of this.pingWaiters.splice(0)) resolve(false);
    });
    this.#onData(Buffer.alloc(0));
    const welcome = await this.request({ type: 'login', name: this.name });
    if (welcome?.type !== 'welcome') throw new Error(`${this.name}: login: ${JSON.stringify(welcome)}`);
    const joined = await this.request({ type: 'join', room: this.room });
    if (joined?.type !== 'joined') throw new Error(`${this.name}: join: ${JSON.stringify(joined)}`);
    this.start = joined.seq;
  }

  #onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const f = parseFrame(this.buf);
      if (!f) break;
      this.buf = this.buf.subarray(f.used);
      const frame = f.value;
      if (frame.opcode === OP.PING) {
        this.#writeFrame(encodeFrame({ opcode: OP.PONG, payload: frame.payload }));
        for (const resolve of this.pingWaiters.splice(0)) resolve(true);
        continue;
      }
      if (frame.opcode === OP.CLOSE) {
        this.problems.push(`${this.name}: close frame ${frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : ''}`);
        continue;
      }
      if (frame.opcode !== OP.TEXT) continue;
      const m = JSON.parse(frame.payload.toString('utf8'));
      if (m.type === 'message') {
        if (m.room === this.room) this.seqs.push(m.seq);
      } else if (m.type === 'presence' || m.type === 'typing' || m.type === 'hello') {
        // not counted
      } else if (m.id !== undefined && this.pending.has(m.id)) {
        const resolve = this.pending.get(m.id);
        this.pending.delete(m.id);
        resolve(m);
      } else {
        this.problems.push(`${this.name}: unexpected ${JSON.stringify(m).slice(0, 200)}`);
      }
    }
  }

  // Writes a whole frame now, or after the second half of the frame that is half out.
  #writeFrame(bytes) {
    if (this.waiting) {
      this.waiting.push(bytes);
      this.pongsDeferred++;
    } else {
      this.socket.write(bytes);
    }
  }

  // Resolves true at the next ping received, false if the connection closes first.
  nextPing() {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => this.pingWaiters.push(resolve));
  }

  // Sends obj with a fresh id; resolves with the reply (null if the connection closed).
  request(obj, { split } = {}) {
    const id = this.nextId++;
    const frame = encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify({ ...obj, id }) });
    const p = new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        this.problems.push(`${this.name}: no reply to ${obj.type} ${id} in ${REPLY_MS} ms`);
        resolve(null);
      }, REPLY_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
    if (split) {
      const cut = Math.floor(frame.length / 2);
      this.socket.write(frame.subarray(0, cut));
      this.waiting = [];
      split.then(() => {
        const waited = this.waiting;
        this.waiting = null;
        this.socket.write(frame.subarray(cut));
        for (const bytes of waited) this.socket.write(bytes);
      });
    } else {
      this.socket.write(frame);
    }
    return p;
  }

  // One message: cut in two around `split` (a promise) if given.
  async sendOne(split) {
    const k = ++this.sent;
    const cid = `${this.name}-${k}`;
    const reply = await this.request({ type: 'send', room: this.room, text: `${this.name} says ${k}`, cid }, { split });
    if (reply?.type === 'ack') this.acks.set(cid, reply.seq);
    else if (reply) this.problems.push(`${this.name}: ${cid} answered ${JSON.stringify(reply)}`);
  }

  async quit() {
    this.quitting = true;
    this.socket.end();
  }
}

// A telnet user that logs in as a guest and joins one room (which becomes current).
export class TelnetRider {
  constructor(port, name, room) {
    this.port = port;
    this.name = name;
    this.room = room;
    this.lines = []; // texts of the room's messages received, in order ("from: text")
    this.problems = [];
    this.closed = false;
    this.sent = 0;
    this.echoed = new Set();
    this.partial = '';
    this.waiters = [];
  }

  async connect() {
    const socket = net.connect({ port: this.port, host: '127.0.0.1' });
    this.socket = socket;
    socket.setNoDelay(true);
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('data', (d) => this.#onData(d));
    socket.on('error', (err) => this.problems.push(`${this.name}: socket error ${err.code || err.message}`));
    socket.on('close', () => {
      this.closed = true;
      if (!this.quitting) this.problems.push(`${this.name}: connection closed`);
      for (const w of this.waiters) w.resolve(false);
    });
    await this.#until((l) => l === null, /Your name\? $/);
    socket.write(`${this.name}\r\n`);
    await this.#until((l) => l !== null && l.includes(`${this.name} joined #general`));
    socket.write(`/join ${this.room}\r\n`);
    await this.#until((l) => l !== null && l.includes(`You joined #${this.room}`));
    this.ready = true;
  }

  #onData(d) {
    // Telnet negotiation (IAC WILL/WONT ECHO) only around passwords: not here.
    this.partial += d.toString('utf8');
    let nl;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl).replace(/\r$/, '');
      this.partial = this.partial.slice(nl + 1);
      const prefix = `[#${this.room}] `;
      if (line.startsWith(prefix)) {
        const text = line.slice(prefix.length);
        this.lines.push(text);
        if (text.startsWith(`${this.name}: `)) this.echoed.add(text.slice(this.name.length + 2));
      } else if (this.ready && line.startsWith('!')) {
        this.problems.push(`${this.name}: ${line}`);
      }
      this.#check(line);
    }
    this.#check(null);
  }

  #check(line) {
    for (const w of [...this.waiters]) {
      if (w.test(line, this.partial)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(true);
      }
    }
  }

  // Resolves once pred(line) holds for a line received from now on (or, for a prompt, re
  // matches the unterminated rest).
  // Resolves true once a line matches pred (or the unterminated rest matches re), false after
  // timeoutMs if given.
  #until(pred, re, timeoutMs) {
    return new Promise((resolve) => {
      const test = (line, partial) => (re ? re.test(partial) : pred(line));
      if (re && re.test(this.partial)) return resolve(true);
      const waiter = { test, resolve };
      this.waiters.push(waiter);
      if (timeoutMs) {
        setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i < 0) return;
          this.waiters.splice(i, 1);
          resolve(false);
        }, timeoutMs);
      }
    });
  }

  // One line, cut in two around `split` if given; resolves once it is echoed back (stored).
  async sendOne(split) {
    const k = ++this.sent;
    const text = `${this.name} types ${k}`;
    const echoed = this.#until((l) => l === `[#${this.room}] ${this.name}: ${text}`, undefined, REPLY_MS);
    const bytes = Buffer.concat([Buffer.from(text), LINE_END]);
    if (split) {
      const cut = Math.floor(bytes.length / 2);
      this.socket.write(bytes.subarray(0, cut));
      split.then(() => this.socket.write(bytes.subarray(cut)));
    } else {
      this.socket.write(bytes);
    }
    if (!(await echoed)) this.problems.push(`${this.name}: "${text}" not echoed in ${REPLY_MS} ms`);
  }

  async quit() {
    this.quitting = true;
    this.socket.end();
  }
}

// Runs rider.sendOne in a loop, paced by pauseMs, until stop(); before an upgrade, cut() makes
// the next message wait, half sent, until the returned release() is called.
export function drive(rider, pauseMs) {
  const d = { rider, running: true, hold: null };
  d.done = (async () => {
    while (d.running && !rider.closed) {
      let split;
      if (d.hold) {
        split = d.hold.promise;
        d.hold.armed();
        d.hold = null;
      }
      await rider.sendOne(split);
      await new Promise((r) => setTimeout(r, pauseMs * (0.5 + Math.random())));
    }
  })();
  // Resolves once the first half of the next message is out; release() sends the rest.
  d.cut = () => {
    let release;
    let armed;
    const promise = new Promise((r) => (release = r));
    const out = new Promise((r) => (armed = r));
    d.hold = { promise, armed };
    return { out, release };
  };
  d.stop = async () => {
    d.running = false;
    await d.done;
  };
  return d;
}
