// load: many clients spread over a cluster's nodes (tests/nodes/lib/cluster.mjs), each in a few
// rooms, sending with cids; and the check that every member got every event of its rooms exactly
// once, in seq order.
import assert from 'node:assert/strict';
import { ChatClient, PASSWORD, ms } from '../../chat/lib/chat.mjs';
import { TelnetClient, esc } from '../../chat/lib/telnet.mjs';

export const LOAD_TIMEOUT = ms(60000);

// The rooms of a load: general (where telnet guests land) and n - 1 others.
export function roomNames(n) {
  return ['general', ...Array.from({ length: n - 1 }, (_, i) => `room${i + 1}`)];
}

// A registered user on node joins every room once, which makes them (rule 60).
export async function makeRooms(node, rooms) {
  const c = await ChatClient.connect(node, { label: 'maker' });
  await c.register('maker', PASSWORD);
  await c.login('maker', PASSWORD);
  for (const room of rooms) if (room !== 'general') await c.join(room);
  c.terminate();
}

// Opens `count` clients, client i on nodes[i % nodes.length]; every tenth one is a telnet guest
// (in general), the others WebSocket guests in two rooms each. Resolves with {ws, telnet}: each
// entry {client, node, rooms: Map(room -> seq at its join)}.
export async function openClients(t, nodes, count, rooms, prefix = 'g') {
  const ws = [];
  const telnet = [];
  const opening = [];
  for (let i = 0; i < count; i++) {
    const node = nodes[i % nodes.length];
    const name = `${prefix}${i}`;
    opening.push(
      (async () => {
        if (i % 10 === 9) {
          const client = await TelnetClient.connect(node, `telnet ${name}`);
          t.after(() => client.destroy());
          await client.waitPrompt(/\S/, LOAD_TIMEOUT, 'the name prompt');
          await client.send(name);
          await client.nextLine(new RegExp(`^\\* ${esc(name)} joined #general`), LOAD_TIMEOUT, 'joined #general');
          telnet.push({ client, node, name });
          return;
        }
        const client = await ChatClient.connect(node, { label: name, timeoutMs: LOAD_TIMEOUT });
        t.after(() => client.terminate());
        await client.expect({ type: 'login', name }, 'welcome', { timeoutMs: LOAD_TIMEOUT });
        const mine = new Map();
        for (const room of [rooms[i % rooms.length], rooms[(i * 7 + 3) % rooms.length]]) {
          if (mine.has(room)) continue;
          const joined = await client.expect({ type: 'join', room }, 'joined', { timeoutMs: LOAD_TIMEOUT });
          mine.set(room, joined.seq);
        }
        ws.push({ client, node, name, rooms: mine, index: i });
      })(),
    );
  }
  await Promise.all(opening);
  return { ws, telnet };
}

// Each WebSocket client sends `perClient` messages with cids to its rooms, all at once; a
// server_busy is retried with the same cid (on the same connection) until acked. Resolves with
// acks: Map(room -> [{seq, text}]) and the number of server_busy answers. onAck(n) is called with
// the number of acks so far after each one.
export async function sendAll(ws, perClient, { tag = 'm', retryDelayMs = 50, onAck = () => {} } = {}) {
  const acks = new Map();
  let busy = 0;
  let acked = 0;
  await Promise.all(
    ws.map(async (w) => {
      const rooms = [...w.rooms.keys()];
      for (let k = 0; k < perClient; k++) {
        const room = rooms[k % rooms.length];
        const text = `${tag} ${w.name} ${k}`;
        const cid = `${tag}-${w.name}-${k}`;
        for (;;) {
          const reply = await w.client.request({ type: 'send', room, text, cid }, { timeoutMs: LOAD_TIMEOUT });
          if (reply.type === 'ack') {
            if (!acks.has(room)) acks.set(room, []);
            acks.get(room).push({ seq: reply.seq, text });
            onAck(++acked);
            break;
          }
          assert.equal(reply.code, 'server_busy', `${w.name}: ${JSON.stringify(reply)}`);
          busy++;
          // A client's retry pause (the protocol's retry_ms or a back-off), not synchronisation.
          await new Promise((resolve) => setTimeout(resolve, reply.retry_ms ?? retryDelayMs));
        }
      }
    }),
  );
  return { acks, busy };
}

// The acks of several loads together.
export function mergeAcks(...all) {
  const merged = new Map();
  for (const acks of all) {
    for (const [room, list] of acks) merged.set(room, [...(merged.get(room) ?? []), ...list]);
  }
  return merged;
}

// Every acked seq of a room is distinct: the store gave each message its own seq.
export function assertDistinctSeqs(acks) {
  for (const [room, list] of acks) {
    const seqs = list.map((a) => a.seq);
    assert.equal(new Set(seqs).size, seqs.length, `${room}: an acked seq was given twice`);
  }
}

// Waits until each WebSocket client has the newest message of each of its rooms, then checks it
// got every message event after its join exactly once, in seq order, with the acked texts; and
// each telnet client every message line of general once, in seq order.
// typedIn: rooms where telnet clients also type, so that events past the newest ack exist (the
// caller checks those rooms as a whole); there a client's run is compared up to that ack.
export async function assertDelivered(ws, telnet, acks, { typedIn = new Set() } = {}) {
  const textOf = new Map(); // room -> Map(seq -> text)
  const newest = new Map();
  for (const [room, list] of acks) {
    textOf.set(room, new Map(list.map((a) => [a.seq, a.text])));
    newest.set(room, Math.max(...list.map((a) => a.seq)));
  }
  await Promise.all(
    ws.map(async (w) => {
      for (const [room, joinSeq] of w.rooms) {
        const last = newest.get(room);
        if (!last || last <= joinSeq) continue;
        if (!w.client.log.some((m) => m.type === 'message' && m.room === room && m.seq === last)) {
          await w.client.next((m) => m.type === 'message' && m.room === room && m.seq === last, LOAD_TIMEOUT, `${room} seq ${last}`);
        }
        const got = w.client.log
          .filter((m) => m.type === 'message' && m.room === room && (!typedIn.has(room) || m.seq <= last))
          .map((m) => m.seq);
        const want = [];
        for (let s = joinSeq + 1; s <= last; s++) want.push(s);
        assert.deepEqual(got, want, `${w.name} (${room}, on ${w.node.httpPort}): every seq once, in order`);
        for (const m of w.client.log) {
          if (m.type === 'message' && m.room === room && textOf.get(room).has(m.seq)) {
            assert.equal(m.text, textOf.get(room).get(m.seq), `${w.name}: the text of ${room} seq ${m.seq}`);
          }
        }
      }
    }),
  );
  const general = [...(acks.get('general') ?? [])].sort((a, b) => a.seq - b.seq);
  if (general.length === 0) return;
  const lastText = general.at(-1).text;
  await Promise.all(
    telnet.map(async (tc) => {
      if (!tc.client.lines.some((l) => l.text.endsWith(`: ${lastText}`))) {
        await tc.client.nextLine(new RegExp(`: ${esc(lastText)}$`), LOAD_TIMEOUT, `the line of ${lastText}`);
      }
      const texts = new Set(general.map((a) => a.text));
      const got = tc.client.lines.map((l) => /^\[#general\] [^:]+: (.*)$/.exec(l.text)?.[1]).filter((x) => x !== undefined && texts.has(x));
      assert.deepEqual(got, general.map((a) => a.text), `${tc.name}: every line of general once, in seq order`);
    }),
  );
}
