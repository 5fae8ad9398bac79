// TelnetClient: raw TCP to the telnet port. Strips and records IAC negotiation, splits the rest
// into lines at LF (recording whether each ended in CR LF), exposes the unterminated prompt.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { EVENT_TIMEOUT, withTimeout } from '../../blackbox/lib/util.mjs';

export const IAC = 255;
export const DONT = 254;
export const DO = 253;
export const WONT = 252;
export const WILL = 251;
export const SB = 250;
export const SE = 240;
export const OPT_ECHO = 1;
export const OPT_SGA = 3;
export const OPT_NAWS = 31;
export const OPT_LINEMODE = 34;

const CMD_NAMES = { [DONT]: 'DONT', [DO]: 'DO', [WONT]: 'WONT', [WILL]: 'WILL' };

const show = (s) => JSON.stringify(s);

export class TelnetClient {
  #state = 'data';
  #cmd = 0;
  #line = []; // bytes of the line being received (IAC removed)
  #inbox = []; // complete lines not yet taken: {n, text}
  #n = 0;
  #wakeups = new Set();
  #promptMark = 0; // characters of the current partial line already taken as a prompt

  constructor(socket, label = 'telnet') {
    this.socket = socket;
    this.label = label;
    this.raw = []; // every received chunk, for byte-exact checks
    this.lines = []; // every complete line: {text, crlf, bytes}
    this.negotiations = []; // {cmd: 'WILL'|'WONT'|'DO'|'DONT', opt, line: index of the line it came in}
    this.subnegotiations = 0;
    this.ended = false;
    socket.setNoDelay(true);
    socket.on('data', (data) => {
      this.raw.push(Buffer.from(data));
      for (const b of data) this.#byte(b);
      this.#wake();
    });
    this.closed = new Promise((resolve) => {
      const done = () => {
        if (this.ended) return;
        this.ended = true;
        this.#wake();
        resolve();
      };
      socket.on('end', done);
      socket.on('close', done);
      socket.on('error', (err) => {
        this.error = err;
        done();
      });
    });
  }

  // localAddress: the loopback address to connect from (all of 127/8 reaches the server).
  static connect(server, label = 'telnet', timeoutMs = EVENT_TIMEOUT, { localAddress } = {}) {
    const socket = net.connect({ port: server.telnetPort, host: '127.0.0.1', localAddress });
    const connected = new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(new TelnetClient(socket, label)));
      socket.once('error', reject);
    });
    return withTimeout(connected, timeoutMs, `${label}: TCP connect to the telnet port`).catch((err) => {
      socket.destroy();
      throw err;
    });
  }

  // Connects over TLS to `port` (a --telnet-tls port), trusting `ca`; resolves after the handshake.
  static connectTls(port, ca, label = 'telnet-tls', timeoutMs = EVENT_TIMEOUT, options = {}) {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca, ...options });
    const connected = new Promise((resolve, reject) => {
      socket.once('secureConnect', () => resolve(new TelnetClient(socket, label)));
      socket.once('error', reject);
    });
    return withTimeout(connected, timeoutMs, `${label}: TLS connect to port ${port}`).catch((err) => {
      socket.destroy();
      throw err;
    });
  }

  #byte(b) {
    switch (this.#state) {
      case 'data':
        if (b === IAC) this.#state = 'iac';
        else if (b === 0x0a) this.#endLine();
        else this.#line.push(b);
        break;
      case 'iac':
        if (b === IAC) {
          this.#line.push(IAC);
          this.#state = 'data';
        } else if (b >= WILL && b <= DONT) {
          this.#cmd = b;
          this.#state = 'opt';
        } else if (b === SB) {
          this.#state = 'sb';
        } else {
          this.#state = 'data'; // two-byte command (NOP, GA, ...)
        }
        break;
      case 'opt':
        this.negotiations.push({ cmd: CMD_NAMES[this.#cmd], opt: b, line: this.lines.length });
        this.#state = 'data';
        break;
      case 'sb':
        if (b === IAC) this.#state = 'sb_iac';
        break;
      case 'sb_iac':
        if (b === SE) {
          this.subnegotiations += 1;
          this.#state = 'data';
        } else {
          this.#state = 'sb';
        }
        break;
      default:
        throw new Error(`bad state ${this.#state}`);
    }
  }

  #endLine() {
    let bytes = Buffer.from(this.#line);
    const crlf = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d;
    if (crlf) bytes = bytes.subarray(0, bytes.length - 1);
    const text = bytes.toString('utf8');
    this.lines.push({ text, crlf, bytes });
    this.#inbox.push({ n: ++this.#n, text });
    this.#line = [];
    this.#promptMark = 0;
  }

  #wake() {
    for (const w of this.#wakeups) w();
  }

  // The received text after the last line end (a prompt waits there).
  get partial() {
    return Buffer.from(this.#line).toString('utf8');
  }

  // Every received byte so far.
  rawBytes() {
    return Buffer.concat(this.raw);
  }

  #describe(what) {
    const recent = this.#inbox.slice(-15).map((e) => show(e.text));
    return `${this.label}: ${what}; untaken lines: [${recent.join(', ')}]; partial: ${show(this.partial)}${
      this.ended ? '; connection closed' : ''
    }`;
  }

  // Waits until check() returns a value other than undefined; fails on timeout or close.
  async #wait(check, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      if (this.ended) throw new Error(this.#describe(`connection closed while waiting for ${what}`));
      let wake;
      const input = new Promise((resolve) => {
        wake = resolve;
        this.#wakeups.add(wake);
      });
      try {
        await withTimeout(input, Math.max(0, deadline - Date.now()), this.#describe(what));
      } finally {
        this.#wakeups.delete(wake);
      }
    }
  }

  static #matcher(want) {
    if (want instanceof RegExp) return (s) => want.test(s);
    if (typeof want === 'string') return (s) => s === want;
    return want;
  }

  // The first complete line (received or to come) matching `want` (RegExp, exact string or
  // predicate); it is taken out of the inbox.
  nextLine(want = () => true, timeoutMs = EVENT_TIMEOUT, what = `a line matching ${want}`) {
    const match = TelnetClient.#matcher(want);
    return this.#wait(
      () => {
        const i = this.#inbox.findIndex((e) => match(e.text));
        return i >= 0 ? this.#inbox.splice(i, 1)[0].text : undefined;
      },
      timeoutMs,
      what,
    );
  }

  // Like nextLine, and also takes every line that came before it: {match, before}.
  async until(want, timeoutMs = EVENT_TIMEOUT, what = `a line matching ${want}`) {
    const match = TelnetClient.#matcher(want);
    const entry = await this.#wait(
      () => {
        const i = this.#inbox.findIndex((e) => match(e.text));
        return i >= 0 ? this.#inbox.splice(i, 1)[0] : undefined;
      },
      timeoutMs,
      what,
    );
    const before = this.#inbox.filter((e) => e.n < entry.n).map((e) => e.text);
    this.#inbox = this.#inbox.filter((e) => e.n > entry.n);
    return { match: entry.text, before };
  }

  // Waits until the unterminated partial line (past any prompt already taken) matches `re`.
  waitPrompt(re = /\S/, timeoutMs = EVENT_TIMEOUT, what = `a prompt matching ${re}`) {
    return this.#wait(
      () => {
        const p = this.partial.slice(this.#promptMark);
        if (!re.test(p)) return undefined;
        this.#promptMark = this.partial.length;
        return p;
      },
      timeoutMs,
      what,
    );
  }

  // Lines received and not yet taken.
  pendingLines() {
    return this.#inbox.map((e) => e.text);
  }

  // Drops every line received so far from the inbox.
  discardLines() {
    this.#inbox = [];
  }

  write(data) {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  // Sends one line ending in CR LF.
  send(line) {
    return this.write(Buffer.concat([Buffer.isBuffer(line) ? line : Buffer.from(line, 'utf8'), Buffer.from('\r\n')]));
  }

  // Asserts that every complete line received so far ended in CR LF.
  assertCrlf() {
    const bad = this.lines.filter((l) => !l.crlf).map((l) => show(l.text));
    assert.deepEqual(bad, [], `${this.label}: lines ending in a bare LF: ${bad.join(', ')}`);
  }

  waitClosed(timeoutMs = EVENT_TIMEOUT, what = 'the server to close the connection') {
    return withTimeout(this.closed, timeoutMs, this.#describe(what));
  }

  destroy() {
    this.socket.destroy();
  }
}

// Regexp source with the special characters of `s` escaped.
export const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// Connects, answers the name prompt with `name` (a guest or /login line) and waits for the
// "* NAME joined #general (N online)" notice. Returns the client; client.online = N.
export async function telnetLogin(server, t, name, { label = `telnet ${name}`, line = name } = {}) {
  const client = await TelnetClient.connect(server, label);
  t?.after(() => client.destroy());
  await client.waitPrompt(/\S/, EVENT_TIMEOUT, 'the name prompt');
  await client.send(line);
  const notice = await client.nextLine(
    new RegExp(`^\\* ${esc(name)} joined #general \\((\\d+) online\\)`, 'i'),
    EVENT_TIMEOUT,
    `the "* ${name} joined #general (N online)" notice`,
  );
  client.name = name;
  client.online = Number(/\((\d+) online\)/.exec(notice)[1]);
  client.notice = notice;
  return client;
}
