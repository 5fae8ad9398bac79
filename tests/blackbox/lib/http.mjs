// Raw HTTP/1.1 over TCP: build exact request bytes, parse the server's responses.
import { RawConn } from './rawconn.mjs';
import { EVENT_TIMEOUT } from './util.mjs';

// Request text from parts; headers is a list of [name, value] pairs, sent in order.
export function buildRequest({ method = 'GET', path = '/', version = 'HTTP/1.1', headers = [], body = '' }) {
  const head = [`${method} ${path} ${version}`, ...headers.map(([k, v]) => `${k}: ${v}`)];
  return `${head.join('\r\n')}\r\n\r\n${body}`;
}

// Parses a status line and header block; null until "\r\n\r\n" has arrived.
function parseHead(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new Error(`malformed status line: ${JSON.stringify(statusLine)}`);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed header line: ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  const value = { version: m[1], status: Number(m[2]), reason: m[3] ?? '', headers, rawHeaders };
  return { value, used: end + 4 };
}

// Decodes a complete chunked body; null while incomplete.
function parseChunked(buf) {
  const chunks = [];
  let pos = 0;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos);
    if (lineEnd < 0) return null;
    const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error('malformed chunk size');
    const dataStart = lineEnd + 2;
    if (size === 0) {
      // The last chunk's line end doubles as the start of the (usually empty) trailer's end.
      const trailerEnd = buf.indexOf('\r\n\r\n', lineEnd);
      return trailerEnd < 0 ? null : { value: Buffer.concat(chunks), used: trailerEnd + 4 };
    }
    if (buf.length < dataStart + size + 2) return null;
    chunks.push(buf.subarray(dataStart, dataStart + size));
    pos = dataStart + size + 2;
  }
}

function hasNoBody(method, status) {
  return method === 'HEAD' || status === 101 || status === 204 || status === 304 || status < 200;
}

// Reads one response from `conn`; `method` is that of the request it answers.
export async function readResponse(conn, { method = 'GET', timeoutMs = EVENT_TIMEOUT } = {}) {
  const res = await conn.take(parseHead, timeoutMs, `response head to ${method}`);
  const length = res.headers['content-length'];
  if (hasNoBody(method, res.status)) {
    res.body = Buffer.alloc(0);
  } else if (length !== undefined) {
    const n = Number(length);
    res.body = await conn.take(
      (buf) => (buf.length >= n ? { value: Buffer.from(buf.subarray(0, n)), used: n } : null),
      timeoutMs,
      `${n}-byte response body`,
    );
  } else if (/chunked/i.test(res.headers['transfer-encoding'] ?? '')) {
    res.body = await conn.take(parseChunked, timeoutMs, 'chunked response body');
  } else {
    await conn.waitClosed(timeoutMs, 'end of a body delimited by connection close');
    res.body = await conn.take((buf) => ({ value: Buffer.from(buf), used: buf.length }));
  }
  res.text = res.body.toString('utf8');
  return res;
}

// Opens a connection, writes `request` (string or Buffer) in one write, reads one response
// per entry of `methods`, then closes. Resolves with the list of responses.
export async function exchange(port, request, { methods = ['GET'], timeoutMs = EVENT_TIMEOUT, localAddress } = {}) {
  const conn = await RawConn.connect(port, { localAddress });
  try {
    await conn.write(request);
    const responses = [];
    for (const method of methods) responses.push(await readResponse(conn, { method, timeoutMs }));
    return responses;
  } finally {
    conn.destroy();
  }
}

// One request, one response.
export async function httpRequest(port, parts, opts = {}) {
  const method = parts.method ?? 'GET';
  const [res] = await exchange(port, buildRequest(parts), { methods: [method], ...opts });
  return res;
}

// A plain GET with a Host header and `Connection: close`.
export function get(port, path, extraHeaders = []) {
  const headers = [['Host', `127.0.0.1:${port}`], ['Connection', 'close'], ...extraHeaders];
  return httpRequest(port, { method: 'GET', path, headers });
}
