// A plain WebSocket chat client in node, to put messages on the server from outside the browser.
import WebSocket from 'ws';
import { ms, withTimeout } from '../../blackbox/lib/util.mjs';

export async function seedClient(server, name, { guest = false } = {}) {
  const ws = new WebSocket(server.wsUrl, { origin: `http://127.0.0.1:${server.httpPort}` });
  const waiting = new Map();
  const events = []; // everything that was not a reply
  let nextId = 1;
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    if (msg.id !== undefined && waiting.has(msg.id)) {
      waiting.get(msg.id)(msg);
      waiting.delete(msg.id);
    } else {
      events.push(msg);
    }
  });
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), ms(5000), 'seed connection');
  const request = (msg) => withTimeout(new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    ws.send(JSON.stringify({ ...msg, id }));
  }), ms(5000), `reply to ${msg.type}`);
  // Registered (protocol 1.1 rule 60: only a registered user's join creates a room, and seeds
  // make rooms); a name registered already (a seed of the same name) logs in with the password.
  // A crowd that only joins existing rooms logs in as guests (`guest`): registering hundreds of
  // names from one address meets the registration throttle.
  const password = 'seed-password-1';
  // Many seeds at once can fill the server's queue of sign-ins waiting for their password hash
  // (rate_limited with retry_after): each waits as told and asks again.
  const signIn = async (msg) => {
    for (;;) {
      const reply = await request(msg);
      if (reply.code !== 'rate_limited') return reply;
      await new Promise((r) => setTimeout(r, (reply.retry_after || 1) * 1000));
    }
  };
  if (!guest) await signIn({ type: 'register', name, password });
  const welcome = await signIn(guest ? { type: 'login', name } : { type: 'login', name, password });
  if (welcome.type !== 'welcome') throw new Error(`seed login: ${JSON.stringify(welcome)}`);
  return {
    events,
    request,
    async send(room, text) {
      const ack = await request({ type: 'send', room, text });
      if (ack.type !== 'ack') throw new Error(`seed send: ${JSON.stringify(ack)}`);
      return ack;
    },
    // Sends a request that has no reply (typing).
    notify: (msg) => ws.send(JSON.stringify(msg)),
    close: () => ws.close(),
  };
}
