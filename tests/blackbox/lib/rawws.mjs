// Raw RFC 6455 client over TCP: handshake with chosen headers, any frame out, parsed frames in.
import { createHash, randomBytes } from 'node:crypto';
import { RawConn } from './rawconn.mjs';
import { readResponse, buildRequest } from './http.mjs';
import { AsyncQueue, EVENT_TIMEOUT } from './util.mjs';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };
export const RSV1 = 4;
export const RSV2 = 2;
export const RSV3 = 1;

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2).
export function acceptFor(key) {
  return createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
}

export const newKey = () => randomBytes(16).toString('base64');

// The headers of a valid upgrade request, as [name, value] pairs.
export function upgradeHeaders({ host, key }) {
  return [
    ['Host', host],
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Key', key],
    ['Sec-WebSocket-Version', '13'],
  ];
}

// Applies {name: value} overrides to a header list: replaces in place (case-insensitive),
// appends new names, and removes names whose value is null.
export function withHeaders(headers, overrides = {}) {
  const out = headers.map(([k, v]) => [k, v]);
  for (const [name, value] of Object.entries(overrides)) {
    const i = out.findIndex(([k]) => k.toLowerCase() === name.toLowerCase());
    if (value === null) {
      if (i >= 0) out.splice(i, 1);
    } else if (i >= 0) {
      out[i][1] = value;
    } else {
      out.push([name, value]);
    }
  }
  return out;
}

// Request text of an upgrade to `path`, with header overrides (see withHeaders).
export function upgradeRequest({ port, path, key = newKey(), headers = {}, version = 'HTTP/1.1' }) {
  const base = upgradeHeaders({ host: `127.0.0.1:${port}`, key });
  return buildRequest({ method: 'GET', path, version, headers: withHeaders(base, headers) });
}

const toBuffer = (payload) => (Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? ''));

// Encodes one frame. rsv: bit mask of RSV1|RSV2|RSV3. lengthBytes: 0, 2 or 8 extended-length
// bytes (default: the minimal encoding). declaredLength overrides the length field only.
export function encodeFrame({
  opcode,
  payload,
  fin = true,
  rsv = 0,
  mask = true,
  maskKey = randomBytes(4),
  lengthBytes,
  declaredLength,
}) {
  const data = toBuffer(payload);
  const length = declaredLength ?? data.length;
  const extBytes = lengthBytes ?? (length < 126 ? 0 : length < 65536 ? 2 : 8);
  const head = Buffer.alloc(2 + extBytes);
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const maskBit = mask ? 0x80 : 0;
  if (extBytes === 0) {
    head[1] = maskBit | length;
  } else if (extBytes === 2) {
    head[1] = maskBit | 126;
    head.writeUInt16BE(length, 2);
  } else {
    head[1] = maskBit | 127;
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!mask) return Buffer.concat([head, data]);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i] ^= maskKey[i % 4];
  return Buffer.concat([head, maskKey, masked]);
}

// Payload of a close frame: 2-byte code then the reason.
export function closePayload(code, reason = '') {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(code);
  return Buffer.concat([head, toBuffer(reason)]);
}

// Decodes one frame from the start of buf; null while incomplete.
export function parseFrame(buf) {
  if (buf.length < 2) return null;
  let length = buf[1] & 0x7f;
  let pos = 2;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    pos = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    length = Number(buf.readBigUInt64BE(2));
    pos = 10;
  }
  const masked = (buf[1] & 0x80) !== 0;
  const maskKey = masked ? buf.subarray(pos, pos + 4) : null;
  if (masked) pos += 4;
  if (buf.length < pos + length) return null;
  const payload = Buffer.from(buf.subarray(pos, pos + length));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= maskKey[i % 4];
  const frame = {
    fin: (buf[0] & 0x80) !== 0,
    rsv: (buf[0] >> 4) & 7,
    opcode: buf[0] & 0x0f,
    masked,
    payload,
  };
  return { value: frame, used: pos + length };
}

// {code, reason} of a close frame payload; code 1005 when the payload is empty.
export function parseClose(payload) {
  if (payload.length === 0) return { code: 1005, reason: '' };
  if (payload.length === 1) throw new Error('server sent a close frame with a 1-byte payload');
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') };
}

const describeFrame = (f) =>
  `{opcode:${f.opcode} fin:${f.fin} rsv:${f.rsv} masked:${f.masked} len:${f.payload.length}}`;

export class RawWs {
  // Connects, upgrades `path` (header overrides allowed) and checks the 101 and its accept key.
  // `pipelined` bytes (e.g. encoded frames) go out in the same write as the request.
  static async open(
    port,
    { path = '/echo', headers = {}, pipelined = Buffer.alloc(0), timeoutMs = EVENT_TIMEOUT } = {},
  ) {
    const conn = await RawConn.connect(port, { timeoutMs });
    const key = newKey();
    try {
      const request = Buffer.from(upgradeRequest({ port, path, key, headers }));
      await conn.write(Buffer.concat([request, pipelined]));
      const res = await readResponse(conn, { timeoutMs });
      if (res.status !== 101) {
        throw new Error(`upgrade of ${path}: expected 101, got ${res.status}: ${res.text}`);
      }
      if (res.headers['sec-websocket-accept'] !== acceptFor(key)) {
        throw new Error(`upgrade of ${path}: wrong Sec-WebSocket-Accept`);
      }
      return new RawWs(conn, res);
    } catch (err) {
      conn.destroy();
      throw err;
    }
  }

  constructor(conn, response) {
    this.conn = conn;
    this.response = response;
    this.frames = new AsyncQueue();
    this.received = []; // every frame, for diagnostics
    this.closed = conn.closed; // resolves on TCP end
    this.#pump();
  }

  async #pump() {
    try {
      for (;;) {
        const frame = await this.conn.take(parseFrame, Infinity, 'a frame');
        this.received.push(frame);
        this.frames.push(frame);
      }
    } catch (err) {
      this.frames.end(err.message);
    }
  }

  // Sends one frame (see encodeFrame); `split` cuts its bytes into separate TCP writes.
  send(frame, { split = [] } = {}) {
    return this.conn.writeSplit(encodeFrame(frame), split);
  }

  sendRaw(bytes, { split = [] } = {}) {
    return this.conn.writeSplit(bytes, split);
  }

  text(payload, opts = {}) {
    return this.send({ opcode: OP.TEXT, payload, ...opts });
  }

  binary(payload, opts = {}) {
    return this.send({ opcode: OP.BINARY, payload, ...opts });
  }

  ping(payload = '', opts = {}) {
    return this.send({ opcode: OP.PING, payload, ...opts });
  }

  close(code, reason = '', opts = {}) {
    const payload = code === undefined ? Buffer.alloc(0) : closePayload(code, reason);
    return this.send({ opcode: OP.CLOSE, payload, ...opts });
  }

  nextFrame(timeoutMs = EVENT_TIMEOUT, what = 'a frame from the server') {
    return this.frames.next(timeoutMs, what);
  }

  // Next frame that is not a server ping.
  async nextNonPing(timeoutMs = EVENT_TIMEOUT, what = 'a frame from the server') {
    for (;;) {
      const frame = await this.nextFrame(timeoutMs, what);
      if (frame.opcode !== OP.PING) return frame;
    }
  }

  // Reads frames until a close frame; resolves with {code, reason, before: [frames skipped]}.
  async closeFrame(timeoutMs = EVENT_TIMEOUT) {
    const before = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const what = `a close frame (got before it: ${before.map(describeFrame).join(' ') || 'nothing'})`;
      const frame = await this.nextFrame(Math.max(0, deadline - Date.now()), what);
      if (frame.opcode === OP.CLOSE) {
        if (frame.masked) throw new Error('server sent a masked close frame');
        return { ...parseClose(frame.payload), before };
      }
      before.push(frame);
    }
  }

  // Awaits the server's close frame, answers it like a conforming client, awaits TCP end.
  async expectClose(timeoutMs = EVENT_TIMEOUT) {
    const result = await this.closeFrame(timeoutMs);
    await this.close(result.code === 1005 ? undefined : result.code).catch(() => {});
    await this.conn.waitClosed(timeoutMs, 'TCP close after the close handshake');
    return result;
  }

  destroy() {
    this.conn.destroy();
  }
}
