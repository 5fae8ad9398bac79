// The WebSocket connection: requests with ids and their replies, server events, and automatic
// reconnection with exponential back-off and jitter, over a list of server URLs (the nodes of
// one chat): a failed or dropped connection moves on to the next URL at once, and the back-off
// starts only when every URL has failed in a row. It knows nothing about the page.

const PING_EVERY = 20000; // a ping this often finds connections that died in silence (sleep)
const PING_TIMEOUT = 8000;
const REQUEST_TIMEOUT = 20000;
const MIN_DELAY = 500;
const MAX_DELAY = 15000;

export class RequestError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

export class Connection extends EventTarget {
  #ws = null;
  #nextId = 1;
  #waiting = new Map(); // id -> {resolve, reject, timer}
  #attempt = 0;
  #retryTimer = null;
  #pingTimer = null;
  #wanted = false; // keep connected (reconnect after drops)
  #urls;
  #index = 0; // the URL in use or tried next
  #failedInRow = 0; // URLs that failed or dropped since the last successful login

  constructor(urls) {
    super();
    this.#urls = Array.isArray(urls) ? [...urls] : [urls];
    this.state = 'idle'; // idle | connecting | open | offline
    this.switching = false; // connecting to another URL after a drop, before any back-off
    this.retryAt = 0;
    this.features = new Set(); // hello.features of the server this socket speaks to
    window.addEventListener('online', () => this.retryNow());
    window.addEventListener('offline', () => this.#drop());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.#checkAlive();
    });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get url() {
    return this.#urls[this.#index];
  }

  // More URLs to try (another node's, learned after the page started); duplicates are ignored.
  addUrls(urls) {
    for (const u of urls) if (typeof u === 'string' && !this.#urls.includes(u)) this.#urls.push(u);
  }

  #setState(state) {
    this.state = state;
    if (state === 'open' || state === 'offline' || state === 'idle') this.switching = false;
    this.#emit('state', { state, retryAt: this.retryAt });
  }

  // Opens the socket (if not open yet) and keeps it open until close().
  open() {
    this.#wanted = true;
    if (this.#ws) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.#next();
      return;
    }
    this.#ws = ws;
    ws.onmessage = (e) => this.#onMessage(ws, e);
    ws.onclose = () => this.#onClose(ws);
    ws.onerror = () => {};
  }

  // Resolves once the server's hello has arrived.
  ready() {
    if (this.state === 'open') return Promise.resolve();
    this.open();
    return new Promise((resolve) => {
      const on = () => {
        if (this.state !== 'open') return;
        this.removeEventListener('state', on);
        resolve();
      };
      this.addEventListener('state', on);
    });
  }

  close() {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    const ws = this.#ws;
    this.#detach(ws);
    if (ws) ws.close(1000);
    this.#setState('idle');
  }

  // The back-off starts again from its shortest delay, and every URL may be tried at once again
  // (after a successful login: a server that greets and then drops us does not count).
  resetBackoff() {
    this.#attempt = 0;
    this.#failedInRow = 0;
  }

  retryNow() {
    if (this.#wanted && !this.#ws) this.open();
  }

  // Sends a request and resolves with its reply (or rejects with a RequestError).
  request(msg, timeoutMs = REQUEST_TIMEOUT) {
    if (this.state !== 'open') return Promise.reject(new RequestError('disconnected'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new RequestError('timeout'));
      }, timeoutMs);
      this.#waiting.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  // Sends a message that has no reply (typing).
  notify(msg) {
    if (this.state === 'open') this.#ws.send(JSON.stringify(msg));
  }

  #onMessage(ws, event) {
    if (ws !== this.#ws) return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'hello') {
      this.features = new Set(Array.isArray(msg.features) ? msg.features : []);
      this.#startPings();
      this.#setState('open');
      return;
    }
    const waiter = msg.id !== undefined && this.#waiting.get(msg.id);
    if (waiter) {
      this.#waiting.delete(msg.id);
      clearTimeout(waiter.timer);
      if (msg.type === 'error') waiter.reject(new RequestError(msg.code, msg.message));
      else waiter.resolve(msg);
      return;
    }
    this.#emit('message', msg);
  }

  #onClose(ws) {
    if (ws !== this.#ws) return;
    this.#detach(ws);
    if (this.#wanted) this.#next();
    else this.#setState('idle');
  }

  // After a failure or a drop: the next URL at once while some have not failed in this round,
  // else the back-off (and the next URL after it).
  #next() {
    this.#failedInRow += 1;
    this.#index = (this.#index + 1) % this.#urls.length;
    if (this.#failedInRow < this.#urls.length) {
      this.switching = true;
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
      this.open();
      return;
    }
    this.#failedInRow = 0;
    this.#scheduleRetry();
  }

  // Forgets the socket at once: pending requests fail and a reconnect is planned.
  #drop() {
    const ws = this.#ws;
    if (!ws) return;
    this.#detach(ws);
    try {
      ws.close();
    } catch {
      // already closing
    }
    if (this.#wanted) this.#next();
  }

  #detach(ws) {
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    if (this.#ws === ws) this.#ws = null;
    clearInterval(this.#pingTimer);
    for (const [id, waiter] of this.#waiting) {
      clearTimeout(waiter.timer);
      waiter.reject(new RequestError('disconnected'));
      this.#waiting.delete(id);
    }
  }

  #scheduleRetry() {
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** this.#attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter"
    this.#attempt += 1;
    this.retryAt = Date.now() + delay;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.open(), delay);
    this.#setState('offline');
  }

  #startPings() {
    clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => this.#checkAlive(), PING_EVERY);
  }

  // A ping that gets no pong in time means the connection is dead (sleep, lost network).
  #checkAlive() {
    if (this.state !== 'open') {
      this.retryNow();
      return;
    }
    const ws = this.#ws;
    this.request({ type: 'ping' }, PING_TIMEOUT).catch((err) => {
      if (err.code === 'timeout' && this.#ws === ws) this.#drop();
    });
  }
}
