// Buffered raw TCP client: write exact bytes, await parsed input with timeouts, observe TCP end.
import net from 'node:net';
import { EVENT_TIMEOUT, withTimeout } from './util.mjs';

export class RawConn {
  #buf = Buffer.alloc(0);
  #wakeups = new Set();

  constructor(socket) {
    this.socket = socket;
    this.ended = false;
    this.error = null;
    socket.setNoDelay(true);
    socket.on('data', (data) => {
      this.#buf = this.#buf.length === 0 ? data : Buffer.concat([this.#buf, data]);
      this.#wake();
    });
    // Resolves when the peer ends or resets the TCP connection (or we destroy it).
    this.closed = new Promise((resolve) => {
      const done = () => {
        if (this.ended) return;
        this.ended = true;
        this.#wake();
        resolve({ error: this.error });
      };
      socket.on('end', done);
      socket.on('close', done);
      socket.on('error', (err) => {
        this.error = err;
        done();
      });
    });
  }

  // localAddress picks the client's source address (any of 127/8 reaches the server on loopback).
  static connect(port, { host = '127.0.0.1', localAddress, timeoutMs = EVENT_TIMEOUT } = {}) {
    const socket = net.connect({ port, host, localAddress });
    const connected = new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(new RawConn(socket)));
      socket.once('error', reject);
    });
    return withTimeout(connected, timeoutMs, `TCP connect to ${host}:${port}`).catch((err) => {
      socket.destroy();
      throw err;
    });
  }

  #wake() {
    for (const wakeup of this.#wakeups) wakeup();
  }

  // Bytes received and not yet consumed.
  get pending() {
    return this.#buf;
  }

  // Writes one chunk; resolves once it was handed to the kernel.
  write(data) {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  // Writes `data` as separate writes, cut at the given byte offsets.
  async writeSplit(data, offsets) {
    let start = 0;
    for (const end of [...offsets, data.length]) {
      if (end > start) await this.write(data.subarray(start, end));
      start = Math.max(start, end);
    }
  }

  // Repeatedly calls parse(buffer) until it returns {value, used}; consumes `used` bytes.
  // parse returns null while it needs more input. Fails on timeout or TCP end.
  async take(parse, timeoutMs = EVENT_TIMEOUT, what = 'data') {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = parse(this.#buf);
      if (result) {
        this.#buf = this.#buf.subarray(result.used);
        return result.value;
      }
      if (this.ended) {
        const why = this.error ? `connection error ${this.error.code}` : 'connection closed';
        throw new Error(`${why} while waiting for ${what} (${this.#buf.length} unparsed bytes)`);
      }
      await this.#nextInput(Math.max(0, deadline - Date.now()), what);
    }
  }

  #nextInput(timeoutMs, what) {
    let wakeup;
    const input = new Promise((resolve) => {
      wakeup = resolve;
      this.#wakeups.add(wakeup);
    });
    const note = `${what} (${this.#buf.length} unparsed bytes so far)`;
    return withTimeout(input, timeoutMs, note).finally(() => this.#wakeups.delete(wakeup));
  }

  // Resolves when the server has closed the TCP connection.
  waitClosed(timeoutMs = EVENT_TIMEOUT, what = 'the server to close the TCP connection') {
    return withTimeout(this.closed, timeoutMs, what);
  }

  destroy() {
    this.socket.destroy();
  }
}
