// ChatClient: a /ws client (the `ws` package) speaking PROTOCOL.md's JSON messages, with
// request(obj) → the reply carrying the same id, and an event inbox searched by predicate.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import { EVENT_TIMEOUT, ms, withTimeout } from '../../blackbox/lib/util.mjs';

export { EVENT_TIMEOUT, ms, withTimeout };

export const PASSWORD = 'correct-horse-9';

let counter = 0;

// A fresh user name (valid: A-Za-z0-9_-. and at most 32 characters).
export function uniq(prefix = 'u') {
  counter += 1;
  return `${prefix}${counter}_${randomBytes(3).toString('hex')}`.slice(0, 32);
}

// A fresh room name (valid: a-z0-9_- and at most 32 characters).
export function uniqRoom(prefix = 'r') {
  return uniq(prefix).toLowerCase();
}

// The canonical dm room of two users.
export function dmRoom(a, b) {
  const [x, y] = [a.toLowerCase(), b.toLowerCase()].sort();
  return `dm:${x}:${y}`;
}

const brief = (m) => {
  const s = JSON.stringify(m);
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
};

// Asserts that `obj` has exactly these keys (in any order).
export function assertKeys(obj, keys, what = 'reply') {
  assert.deepEqual(
    Object.keys(obj).sort(),
    [...keys].sort(),
    `${what} has keys ${JSON.stringify(Object.keys(obj).sort())}, expected ${JSON.stringify([...keys].sort())}: ${brief(obj)}`,
  );
}

// Asserts an error reply {type:'error', id, code, message}; id `undefined` means: no id at all.
export function assertError(reply, code, id, what = '') {
  const label = what ? `${what}: ` : '';
  assert.equal(reply.type, 'error', `${label}expected error ${code}, got ${brief(reply)}`);
  assert.equal(reply.code, code, `${label}expected error ${code}, got ${brief(reply)}`);
  assert.equal(typeof reply.message, 'string', `${label}error without a message string: ${brief(reply)}`);
  assert.ok(reply.message.length > 0, `${label}error with an empty message: ${brief(reply)}`);
  if (id === undefined) {
    assertKeys(reply, ['type', 'code', 'message'], `${label}error without id`);
  } else {
    assertKeys(reply, ['type', 'id', 'code', 'message'], `${label}error`);
    assert.deepEqual(reply.id, id, `${label}error id ${JSON.stringify(reply.id)} is not the request's ${JSON.stringify(id)}`);
  }
}

export class ChatClient {
  #inbox = []; // {n, msg} not yet taken
  #waiters = []; // {pred, resolve}
  #n = 0;
  #nextId = 1;
  #closeInfo = null;

  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.log = []; // every message received, parsed, in order
    this.ignore = null; // (msg) => true drops msg on arrival (floods)
    this.name = undefined;
    this.token = undefined;
    this.welcome = undefined;
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('error', (err) => {
      this.lastError = err;
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.#closeInfo = { code, reason: reason.toString('utf8') };
        for (const w of this.#waiters.splice(0)) w.fail();
        resolve(this.#closeInfo);
      });
    });
  }

  // Opens /ws and waits for the hello greeting, which must be the first message.
  // perMessageDeflate: the ws package's option (default off; e.g. {threshold: 0} compresses all).
  // localAddress: the loopback address to connect from (all of 127/8 reaches the server).
  static async connect(server, { label = 'client', timeoutMs = EVENT_TIMEOUT, headers, perMessageDeflate = false, localAddress } = {}) {
    const ws = new WebSocket(server.wsUrl, { headers, perMessageDeflate, localAddress, ca: server.tls?.ca });
    const client = new ChatClient(ws, label);
    client.server = server;
    const opened = new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade answered HTTP ${res.statusCode}`)));
    });
    try {
      await withTimeout(opened, timeoutMs, `${label}: WebSocket upgrade of ${server.wsUrl}`);
      const hello = await client.next(() => true, timeoutMs, 'the hello greeting');
      assert.equal(hello.type, 'hello', `${label}: first message is not hello: ${brief(hello)}`);
      client.hello = hello;
    } catch (err) {
      ws.terminate();
      throw err;
    }
    return client;
  }

  #onMessage(data, isBinary) {
    let msg;
    if (isBinary) {
      msg = { type: '__binary__', length: data.length };
    } else {
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        msg = { type: '__not_json__', text: data.toString('utf8') };
      }
    }
    if (this.ignore && this.ignore(msg)) return;
    this.log.push(msg);
    const entry = { n: ++this.#n, msg };
    const i = this.#waiters.findIndex((w) => w.pred(msg));
    if (i >= 0) {
      const [w] = this.#waiters.splice(i, 1);
      w.resolve(entry);
    } else {
      this.#inbox.push(entry);
    }
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get closeInfo() {
    return this.#closeInfo;
  }

  // Messages received and not yet taken by next()/request().
  pending() {
    return this.#inbox.map((e) => e.msg);
  }

  #describe(what) {
    const left = this.#inbox.map((e) => brief(e.msg));
    const close = this.#closeInfo ? `; closed ${JSON.stringify(this.#closeInfo)}` : '';
    return `${this.label}${this.name ? ` (${this.name})` : ''}: ${what}${close}; unmatched inbox: [${left.join(', ')}]`;
  }

  // what: a string, or a function that makes it (called only for an error).
  #takeEntry(pred, timeoutMs, what) {
    const about = () => (typeof what === 'function' ? what() : what);
    const i = this.#inbox.findIndex((e) => pred(e.msg));
    if (i >= 0) return Promise.resolve(this.#inbox.splice(i, 1)[0]);
    if (this.#closeInfo) return Promise.reject(new Error(this.#describe(`connection closed before ${about()}`)));
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = {
        pred,
        resolve,
        fail: () => reject(new Error(this.#describe(`connection closed while waiting for ${about()}`))),
      };
      this.#waiters.push(waiter);
    });
    // Described only on a timeout: the inbox may hold thousands of messages (a sender's own
    // echoes), and describing it for every request made a long run quadratic.
    return withTimeout(p, timeoutMs, () => this.#describe(about())).finally(() => {
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
    });
  }

  // The first message (received or to come) for which pred(msg) holds; it is removed. what (a
  // string, or a function making one) names it in an error.
  async next(pred = () => true, timeoutMs = EVENT_TIMEOUT, what = 'a message') {
    return (await this.#takeEntry(pred, timeoutMs, what)).msg;
  }

  // Waits for the first message matching pred; also takes every message that arrived before it.
  // Resolves {match, before}. Used to show that something did NOT arrive before a marker.
  async until(pred, timeoutMs = EVENT_TIMEOUT, what = 'a marker message') {
    const entry = await this.#takeEntry(pred, timeoutMs, what);
    const before = this.#inbox.filter((e) => e.n < entry.n);
    this.#inbox = this.#inbox.filter((e) => e.n > entry.n);
    return { match: entry.msg, before: before.map((e) => e.msg) };
  }

  sendText(text) {
    return new Promise((resolve, reject) => {
      this.ws.send(text, (err) => (err ? reject(err) : resolve()));
    });
  }

  send(obj) {
    return this.sendText(JSON.stringify(obj));
  }

  // Sends obj (with a fresh numeric id unless obj has an own `id`) and resolves with the
  // reply whose id equals it.
  async request(obj, { timeoutMs = EVENT_TIMEOUT } = {}) {
    const msg = Object.hasOwn(obj, 'id') ? obj : { ...obj, id: this.#nextId++ };
    const id = msg.id;
    await this.send(msg);
    return this.next(
      (m) => m.type !== 'message' && Object.hasOwn(m, 'id') && isDeepStrictEqual(m.id, id),
      timeoutMs,
      `the reply to ${brief(msg)}`,
    );
  }

  // request() that must answer with `type`; returns the reply.
  async expect(obj, type, opts) {
    const reply = await this.request(obj, opts);
    assert.equal(reply.type, type, `${this.label}: ${brief(obj)} answered ${brief(reply)}, expected ${type}`);
    return reply;
  }

  // request() that must answer with error `code` echoing the request id.
  async expectError(obj, code, opts) {
    const msg = Object.hasOwn(obj, 'id') ? obj : { ...obj, id: this.#nextId++ };
    const reply = await this.request(msg, opts);
    assertError(reply, code, msg.id, `${this.label}: ${brief(msg)}`);
    return reply;
  }

  async register(name, password = PASSWORD) {
    const reply = await this.expect({ type: 'register', name, password }, 'registered');
    return reply;
  }

  async login(name, password) {
    const req = { type: 'login', name };
    if (password !== undefined) req.password = password;
    const welcome = await this.expect(req, 'welcome');
    this.#loggedIn(welcome);
    return welcome;
  }

  async loginToken(token) {
    const welcome = await this.expect({ type: 'login', token }, 'welcome');
    this.#loggedIn(welcome);
    return welcome;
  }

  #loggedIn(welcome) {
    this.name = welcome.name;
    this.token = welcome.token;
    this.welcome = welcome;
  }

  // Every public room, through as many `rooms` pages as it takes (rule 85: at most 200 a reply).
  async allRooms() {
    const all = [];
    let after;
    for (;;) {
      const req = after === undefined ? { type: 'rooms' } : { type: 'rooms', after };
      const r = await this.expect(req, 'rooms');
      all.push(...r.rooms);
      if (!r.more) return all;
      after = r.rooms.at(-1).name;
    }
  }

  async join(room, since) {
    // A guest cannot create a room (rule 60): the tests' guests join rooms a registered user made
    // (tests of rule 60 itself send the join request directly).
    if (this.welcome?.guest && this.server && !room.startsWith('dm:')) await openRoom(this.server, null, room);
    const req = { type: 'join', room };
    if (since !== undefined) req.since = since;
    return this.expect(req, 'joined');
  }

  async leave(room) {
    return this.expect({ type: 'leave', room }, 'left');
  }

  // Sends text to a room and returns the ack.
  async say(room, text, extra = {}) {
    return this.expect({ type: 'send', room, text, ...extra }, 'ack');
  }

  // Sends texts(1..count) to a room, 50 in flight at a time; resolves with the acks, in order.
  async sayMany(room, count, text) {
    const acks = [];
    for (let i = 1; i <= count; i += 50) {
      const batch = [];
      for (let k = i; k < Math.min(count + 1, i + 50); k++) batch.push(this.say(room, text(k)));
      acks.push(...(await Promise.all(batch)));
    }
    return acks;
  }

  // Sends a direct message and returns the ack.
  async dm(to, text, extra = {}) {
    return this.expect({ type: 'send', to, text, ...extra }, 'ack');
  }

  // Next `message` event of `room` (optionally also matching pred).
  nextMessage(room, pred = () => true, timeoutMs = EVENT_TIMEOUT) {
    return this.next((m) => m.type === 'message' && m.room === room && pred(m), timeoutMs, `a message in ${room}`);
  }

  // Collects `count` message events of `room`, in arrival order.
  async messages(room, count, timeoutMs = EVENT_TIMEOUT) {
    const out = [];
    for (let i = 0; i < count; i++) {
      out.push(
        await this.next(
          (m) => m.type === 'message' && m.room === room,
          timeoutMs,
          () => `message ${i + 1} of ${count} in ${room} (got seqs ${out.map((m) => m.seq).join(',')})`,
        ),
      );
    }
    return out;
  }

  // Round trip through the server: every reply to earlier requests of this connection is in.
  async sync() {
    await this.expect({ type: 'ping' }, 'pong');
  }

  waitClosed(timeoutMs = EVENT_TIMEOUT, what = 'the server to close the connection') {
    return withTimeout(this.closed, timeoutMs, `${this.label}: ${what}`);
  }

  async close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000);
    }
    await withTimeout(this.closed, EVENT_TIMEOUT, `${this.label}: close handshake`).catch(() => this.ws.terminate());
  }

  terminate() {
    this.ws.terminate();
  }
}

// A connection registered in `t.after` for cleanup.
export async function connect(server, t, opts = {}) {
  const client = await ChatClient.connect(server, opts);
  t?.after(() => client.terminate());
  return client;
}

// A connection logged in as a guest named `name`.
export async function guest(server, t, name = uniq('g'), opts = {}) {
  const client = await connect(server, t, { label: `guest ${name}`, ...opts });
  const welcome = await client.login(name);
  assert.equal(welcome.guest, true, `guest login of ${name}: ${brief(welcome)}`);
  return client;
}

// Registers `name` on a new connection and logs that connection in with its password.
export async function user(server, t, name = uniq('u'), password = PASSWORD, opts = {}) {
  const client = await connect(server, t, { label: `user ${name}`, ...opts });
  await client.register(name, password);
  const welcome = await client.login(name, password);
  assert.equal(welcome.guest, false, `login of registered ${name}: ${brief(welcome)}`);
  client.password = password;
  return client;
}

// A public room that exists (protocol 1.1 rule 60: only a registered user's join creates one,
// so a guest can join it). A registered "room maker" of the server (one per data directory)
// creates it by joining and leaving, unless it exists already (then nobody hears of the maker).
// server: a ChatServer, or any {wsUrl}. t is unused (kept for call sites that pass it).
// Concurrent calls for one room share one opening: the maker's connections are one registered
// user, and its leave on one takes the room from the others (rule 67).
const openedRooms = new Map(); // server key + room -> the opening's promise
const roomMakers = new Map(); // server key -> the maker's name, once registered
export function openRoom(server, t, room = uniqRoom()) {
  void t;
  const key = server.dataDir ?? server.wsUrl;
  const id = `${key}\u0000${room}`;
  if (!openedRooms.has(id)) {
    const opening = makeRoom(server, key, room);
    opening.catch(() => openedRooms.delete(id)); // a failed opening may be tried again
    openedRooms.set(id, opening);
  }
  return openedRooms.get(id);
}

async function makeRoom(server, key, room) {
  const c = await ChatClient.connect(server, { label: 'room maker' });
  try {
    if (!roomMakers.has(key)) {
      const name = uniq('maker');
      const registered = c.register(name).then(() => name);
      registered.catch(() => roomMakers.delete(key));
      roomMakers.set(key, registered); // other openings wait for the registration
    }
    await c.login(await roomMakers.get(key), PASSWORD);
    const page = await c.expect({ type: 'rooms', after: room.slice(0, -1), limit: 200 }, 'rooms');
    if (!page.rooms.some((r) => r.name === room)) {
      await c.join(room);
      await c.leave(room);
    }
  } finally {
    c.terminate();
  }
  return room;
}

// Another connection (tab) of the same user or guest, logged in with its token.
export async function tab(server, t, of, opts = {}) {
  const client = await connect(server, t, { label: `${of.label} (tab)`, ...opts });
  await client.loginToken(of.token);
  return client;
}

// Asserts that `msgs` are message events of `room` with seqs exactly from..to in order.
export function assertSeqRun(msgs, room, from, to, what = 'messages') {
  const seqs = msgs.map((m) => m.seq);
  const expected = [];
  for (let s = from; s <= to; s++) expected.push(s);
  assert.deepEqual(seqs, expected, `${what}: seqs ${JSON.stringify(seqs)}, expected ${from}..${to}`);
  for (const m of msgs) {
    assert.equal(m.type, 'message', `${what}: not a message event: ${brief(m)}`);
    assert.equal(m.room, room, `${what}: message of another room: ${brief(m)}`);
  }
}

// Asserts a message event's exact shape.
export function assertMessageShape(m, { room, from, text, cid, seq } = {}) {
  const keys = ['type', 'room', 'seq', 'ts', 'from', 'text'];
  if (cid !== undefined) keys.push('cid');
  assertKeys(m, keys, 'message event');
  assert.equal(m.type, 'message');
  assert.ok(Number.isInteger(m.seq) && m.seq >= 1, `seq ${m.seq} is not a positive integer`);
  assert.ok(Number.isInteger(m.ts), `ts ${m.ts} is not an integer (ms since the epoch)`);
  assert.ok(Math.abs(m.ts - Date.now()) < 10 * 60 * 1000, `ts ${m.ts} is not near now (${Date.now()})`);
  if (room !== undefined) assert.equal(m.room, room);
  if (from !== undefined) assert.equal(m.from, from);
  if (text !== undefined) assert.equal(m.text, text);
  if (cid !== undefined) assert.equal(m.cid, cid);
  if (seq !== undefined) assert.equal(m.seq, seq);
}

// Runs fn() until it returns a truthy value or the time runs out (for state the server
// updates asynchronously, e.g. a guest name freed after a disconnect). Polls, never sleeps blindly.
export async function eventually(fn, timeoutMs = EVENT_TIMEOUT, what = 'a condition') {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export const LONG_TIMEOUT = ms(30000);
