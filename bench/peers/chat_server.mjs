// chat_server: the peer for the fan-out benchmark. A Node `ws` server speaking the part of
// parley's protocol the benchmark uses (hello, guest login, join, send → ack + message), the
// way a careful Node chat server would: each message serialized once for all its recipients.
// It keeps nothing on disk, so it does less per message than parley, which stores every
// message durably before it delivers it.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
const rooms = new Map(); // name → { seq, members: Set<ws> }

function room(name) {
  let r = rooms.get(name);
  if (!r) rooms.set(name, (r = { seq: 0, members: new Set() }));
  return r;
}

wss.on('listening', () => console.log(`port=${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ type: 'hello', server: 'peer', version: '0', protocol: 1, node: 'peer' }));
  const joined = new Set();
  ws.on('close', () => {
    for (const r of joined) r.members.delete(ws);
  });
  ws.on('message', (data) => {
    const m = JSON.parse(data);
    if (m.type === 'login') {
      ws.name = m.name;
      ws.send(JSON.stringify({ type: 'welcome', id: m.id, name: m.name, guest: true, token: 'x', dms: [] }));
    } else if (m.type === 'join') {
      const r = room(m.room);
      r.members.add(ws);
      joined.add(r);
      ws.send(JSON.stringify({ type: 'joined', id: m.id, room: m.room, seq: r.seq, members: [], truncated: false }));
    } else if (m.type === 'send') {
      const r = room(m.room);
      const seq = ++r.seq;
      ws.send(JSON.stringify({ type: 'ack', id: m.id, room: m.room, seq }));
      const event = JSON.stringify({ type: 'message', room: m.room, seq, ts: Date.now(), from: ws.name, text: m.text });
      for (const member of r.members) member.send(event);
    }
  });
});
