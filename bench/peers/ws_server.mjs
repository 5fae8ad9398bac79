// ws_server: the peer for benchmarks: a Node `ws` server that greets each client once, as parley's /ws does.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('listening', () => console.log(`port=${wss.address().port}`));
wss.on('connection', (ws) => ws.send('{"type":"hello","server":"peer"}'));
