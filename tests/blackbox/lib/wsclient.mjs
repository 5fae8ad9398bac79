// Conforming WebSocket client (the `ws` package) with awaitable messages, pings, pongs and close.
import WebSocket from 'ws';
import { AsyncQueue, EVENT_TIMEOUT, withTimeout } from './util.mjs';

export class WsClient {
  constructor(ws) {
    this.ws = ws;
    this.messages = new AsyncQueue(); // {data: Buffer, isBinary}
    this.pings = new AsyncQueue(); // Buffer payloads of server pings
    this.pongs = new AsyncQueue(); // Buffer payloads of pongs
    this.errors = [];
    ws.on('message', (data, isBinary) => this.messages.push({ data, isBinary }));
    ws.on('ping', (data) => this.pings.push(data));
    ws.on('pong', (data) => this.pongs.push(data));
    ws.on('error', (err) => this.errors.push(err));
    // Resolves with {code, reason} once the connection is closed (close frame or TCP end).
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        const why = `connection closed (${code})`;
        for (const q of [this.messages, this.pings, this.pongs]) q.end(why);
        resolve({ code, reason: reason.toString('utf8') });
      });
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(data, opts = {}) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, opts, (err) => (err ? reject(err) : resolve()));
    });
  }

  ping(data) {
    return new Promise((resolve, reject) => {
      this.ws.ping(data, undefined, (err) => (err ? reject(err) : resolve()));
    });
  }

  nextMessage(timeoutMs = EVENT_TIMEOUT, what = 'a message from the server') {
    return this.messages.next(timeoutMs, what);
  }

  // Sends one message and resolves with the next message received (the echo on /echo).
  async roundTrip(data, { binary = false, timeoutMs = EVENT_TIMEOUT } = {}) {
    await this.send(data, { binary });
    return this.nextMessage(timeoutMs, `the answer to a ${Buffer.byteLength(data)}-byte message`);
  }

  async nextJson(timeoutMs = EVENT_TIMEOUT, what = 'a JSON text message') {
    const { data, isBinary } = await this.nextMessage(timeoutMs, what);
    if (isBinary) throw new Error(`expected a text message, got ${data.length} binary bytes`);
    return JSON.parse(data.toString('utf8'));
  }

  nextPing(timeoutMs = EVENT_TIMEOUT, what = 'a ping from the server') {
    return this.pings.next(timeoutMs, what);
  }

  nextPong(timeoutMs = EVENT_TIMEOUT, what = 'a pong from the server') {
    return this.pongs.next(timeoutMs, what);
  }

  waitClosed(timeoutMs = EVENT_TIMEOUT, what = 'the connection to close') {
    return withTimeout(this.closed, timeoutMs, what);
  }

  // Starts the close handshake and awaits its end.
  async close(code = 1000, reason = '', timeoutMs = EVENT_TIMEOUT) {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(code, reason);
    return this.waitClosed(timeoutMs, 'the close handshake to finish');
  }

  terminate() {
    this.ws.terminate();
  }
}

// Creates a client without waiting; `opened` resolves on open, rejects on a failed upgrade.
export function connectWs(url, options = {}) {
  const client = new WsClient(new WebSocket(url, options));
  client.opened = new Promise((resolve, reject) => {
    client.ws.once('open', () => resolve(client));
    client.ws.once('error', reject);
  });
  client.opened.catch(() => {}); // callers that never await it must not crash the process
  return client;
}

// Opens a client and waits for the upgrade to complete.
export function openWs(url, { timeoutMs = EVENT_TIMEOUT, ...options } = {}) {
  const client = connectWs(url, options);
  return withTimeout(client.opened, timeoutMs, `WebSocket upgrade of ${url}`).catch((err) => {
    client.terminate();
    throw err;
  });
}
