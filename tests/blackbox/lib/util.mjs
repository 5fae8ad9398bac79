// Shared async helpers for the black-box suite: timeouts, an awaitable queue, event waits.

// Multiplies every default timeout (e.g. PARLEY_TIMEOUT_SCALE=3 for slow machines).
export const TIMEOUT_SCALE = Number(process.env.PARLEY_TIMEOUT_SCALE) || 1;

// A timeout in ms, scaled for slow (sanitizer) builds.
export const ms = (n) => Math.round(n * TIMEOUT_SCALE);

// Default wait for a single network event (a frame, a response, a close).
export const EVENT_TIMEOUT = ms(5000);

// Resolves like `promise`, or rejects with "timed out after N ms waiting for WHAT". `what` may be
// a function, called only on a timeout: a costly description is then not made on every wait.
export function withTimeout(promise, timeoutMs, what) {
  if (!Number.isFinite(timeoutMs)) return promise;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const about = typeof what === 'function' ? what() : what;
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${about}`));
    }, timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolves with the arguments of the next `event` from an EventEmitter.
export function onceEvent(emitter, event, timeoutMs, what = `event '${event}'`) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    timeoutMs,
    what,
  );
}

// FIFO of items produced by events and consumed with `await next()`.
export class AsyncQueue {
  #items = [];
  #waiters = [];
  #endReason = null;

  push(item) {
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(item);
    else this.#items.push(item);
  }

  // No more items will come: pending and later next() calls fail with `reason`.
  end(reason) {
    if (this.#endReason !== null) return;
    this.#endReason = reason;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error(reason));
  }

  get size() {
    return this.#items.length;
  }

  get ended() {
    return this.#endReason !== null;
  }

  next(timeoutMs = EVENT_TIMEOUT, what = 'next item') {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    if (this.#endReason !== null) {
      return Promise.reject(new Error(`${what}: ${this.#endReason}`));
    }
    let waiter;
    const pending = new Promise((resolve, reject) => {
      waiter = { resolve, reject: (err) => reject(new Error(`${what}: ${err.message}`)) };
      this.#waiters.push(waiter);
    });
    return withTimeout(pending, timeoutMs, what).catch((err) => {
      // Drop our waiter so a later item is not swallowed by a timed-out wait.
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
      throw err;
    });
  }
}
