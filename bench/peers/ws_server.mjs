// ws_server: the peer for benchmarks: a Node `ws` server that greets each client once, as parley's /ws does.
//   node bench/peers/ws_server.mjs [--tls-cert FILE --tls-key FILE]   (with them: wss:// over https)
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values } = parseArgs({ options: { 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' } } });
let wss;
if (values['tls-cert']) {
  const server = https.createServer({ cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']) });
  wss = new WebSocketServer({ server });
  server.listen(0, '127.0.0.1', () => console.log(`port=${server.address().port}`));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('listening', () => console.log(`port=${wss.address().port}`));
}
wss.on('connection', (ws) => ws.send('{"type":"hello","server":"peer"}'));
