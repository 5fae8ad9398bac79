// permessage-deflate (RFC 7692) for the raw client: compress and fragment messages the way a
// client does, and read the server's messages back, inflating each on its own.
import zlib from 'node:zlib';
import { OP, RSV1, encodeFrame, parseClose } from './rawws.mjs';
import { EVENT_TIMEOUT } from './util.mjs';

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const SYNC = { finishFlush: zlib.constants.Z_SYNC_FLUSH };

// The offers of the Autobahn testsuite's case 13: client_no_context_takeover and a valueless
// client_max_window_bits always, then the server parameters under test.
const AB = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
export const AUTOBAHN_OFFERS = [
  { name: 'default', offer: AB, serverBits: 15, response: '' },
  { name: 'server_no_context_takeover', offer: `${AB}; server_no_context_takeover`, serverBits: 15, response: '' },
  { name: 'server_max_window_bits=8', offer: `${AB}; server_max_window_bits=8`, serverBits: 8, response: '; server_max_window_bits=8' },
  { name: 'server_max_window_bits=15', offer: `${AB}; server_max_window_bits=15`, serverBits: 15, response: '; server_max_window_bits=15' },
  {
    name: 'server_no_context_takeover and server_max_window_bits=8',
    offer: `${AB}; server_no_context_takeover; server_max_window_bits=8`,
    serverBits: 8,
    response: '; server_max_window_bits=8',
  },
  {
    name: 'three offers, the first declined (window 7)',
    offer: `${AB}; server_max_window_bits=7, ${AB}; server_no_context_takeover; server_max_window_bits=9, ${AB}`,
    serverBits: 9,
    response: '; server_max_window_bits=9',
  },
];
for (const o of AUTOBAHN_OFFERS) {
  o.response = `permessage-deflate; server_no_context_takeover; client_no_context_takeover${o.response}; client_max_window_bits=15`;
}

// A message's payload compressed as RFC 7692 7.2.1 says: raw DEFLATE, sync flush, 00 00 ff ff
// removed. final: end with a BFINAL block instead (7.2.3.4).
export function compressMessage(data, { windowBits = 15, final = false } = {}) {
  const buf = Buffer.from(data);
  if (final) return zlib.deflateRawSync(buf, { windowBits });
  const out = zlib.deflateRawSync(buf, { ...SYNC, windowBits });
  if (!out.subarray(out.length - 4).equals(TAIL)) throw new Error('sync flush without its tail');
  return out.subarray(0, out.length - 4);
}

// Inflates one message's payload with a fresh inflater of window 2^windowBits (so a server that
// took context over from an earlier message would fail here). Output comes in 64-byte steps, so
// zlib looks back through its window, not through the whole output: a distance beyond 2^bits
// (+64) fails, as it would for a client that keeps only that window.
export function inflateMessage(payload, { windowBits = 15 } = {}) {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { ...SYNC, windowBits, chunkSize: 64 });
}

// The frames of one compressed message: RSV1 on the first frame only, the payload cut into frames
// of fragSize bytes (0: one frame), as Autobahn's auto-fragmentation does. Returns one Buffer.
export function compressedFrames(opcode, payload, fragSize = 0, { rsv1OnEvery = false } = {}) {
  const size = fragSize > 0 ? fragSize : Math.max(1, payload.length);
  const frames = [];
  let at = 0;
  do {
    const part = payload.subarray(at, at + size);
    at += part.length;
    const first = frames.length === 0;
    frames.push(
      encodeFrame({
        opcode: first ? opcode : OP.CONT,
        payload: part,
        fin: at >= payload.length,
        rsv: first || rsv1OnEvery ? RSV1 : 0,
      }),
    );
  } while (at < payload.length);
  return Buffer.concat(frames);
}

// Reads the next whole data message (skipping pings): {opcode, compressed, wire, data}, where
// wire is the payload as sent and data the message (inflated when RSV1 was set).
export async function readMessage(ws, { windowBits = 15, timeoutMs = EVENT_TIMEOUT, what = 'a message' } = {}) {
  const frames = [];
  for (;;) {
    const f = await ws.nextNonPing(timeoutMs, what);
    if (f.opcode === OP.CLOSE) {
      const { code, reason } = parseClose(f.payload);
      throw new Error(`closed ${code} '${reason}' while waiting for ${what}`);
    }
    if (f.masked) throw new Error('server frames must not be masked');
    if (frames.length > 0 && f.opcode !== OP.CONT) throw new Error('expected a continuation frame');
    if (frames.length > 0 && f.rsv !== 0) throw new Error(`RSV bits ${f.rsv} on a continuation frame`);
    if (frames.length === 0 && (f.rsv & ~RSV1) !== 0) throw new Error(`RSV bits ${f.rsv} on a data frame`);
    frames.push(f);
    if (f.fin) break;
  }
  const compressed = (frames[0].rsv & RSV1) !== 0;
  const wire = Buffer.concat(frames.map((f) => f.payload));
  const data = compressed ? inflateMessage(wire, { windowBits }) : wire;
  return { opcode: frames[0].opcode, compressed, wire, data };
}

// Peak resident memory of a process so far (VmHWM, bytes), from /proc.
export async function peakRss(pid) {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}
