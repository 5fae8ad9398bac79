// relay_server: the plain relay peer for the C load generator (bench/loadgen, `--protocol relay`):
// a Node `ws` server that sends every text it receives to every connection, the sender's too, in
// the order received. No greeting, no rooms, nothing stored, no compression.
//   node bench/peers/relay_server.mjs [port]   (default 0: a free port; prints "port=N")
import { WebSocketServer, WebSocket } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0), perMessageDeflate: false });
wss.on('listening', () => console.log(`port=${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
