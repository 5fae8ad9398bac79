// RawChat: the chat protocol over the black-box raw WebSocket client, so a test can stop
// reading (socket.pause) and see exactly which frames arrived before the server's close.
import { OP, RawWs, parseClose } from '../../blackbox/lib/rawws.mjs';
import { EVENT_TIMEOUT } from '../../blackbox/lib/util.mjs';

export class RawChat {
  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
  }

  static async open(server) {
    const ws = await RawWs.open(server.httpPort, { path: '/ws' });
    const chat = new RawChat(ws);
    const hello = await chat.nextJson(() => true, EVENT_TIMEOUT, 'hello');
    if (hello.type !== 'hello') throw new Error(`first message is not hello: ${JSON.stringify(hello)}`);
    return chat;
  }

  send(obj) {
    return this.ws.text(JSON.stringify(obj));
  }

  // Sends obj with a fresh id; resolves with the JSON message carrying that id.
  async request(obj, timeoutMs = EVENT_TIMEOUT) {
    const id = this.nextId++;
    await this.send({ ...obj, id });
    return this.nextJson((m) => m.id === id, timeoutMs, `the reply to ${JSON.stringify(obj)}`);
  }

  // The next JSON text message for which pred holds (others are skipped).
  async nextJson(pred, timeoutMs = EVENT_TIMEOUT, what = 'a JSON message') {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = await this.ws.nextNonPing(Math.max(0, deadline - Date.now()), what);
      if (frame.opcode === OP.CLOSE) {
        const { code, reason } = parseClose(frame.payload);
        throw new Error(`closed ${code} "${reason}" while waiting for ${what}`);
      }
      if (frame.opcode !== OP.TEXT) continue;
      const msg = JSON.parse(frame.payload.toString('utf8'));
      if (pred(msg)) return msg;
    }
  }

  // Stops reading from the socket: the kernel buffers fill, then the server's queue grows.
  pause() {
    this.ws.conn.socket.pause();
  }

  resume() {
    this.ws.conn.socket.resume();
  }

  // Reads every frame until the server's close frame or the end of TCP.
  // Resolves {messages: [parsed JSON text messages], close: {code, reason} | null}.
  async drainToClose(timeoutMs = EVENT_TIMEOUT) {
    const messages = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let frame;
      try {
        frame = await this.ws.nextFrame(Math.max(0, deadline - Date.now()), 'frames up to the close');
      } catch (err) {
        if (/timed out/.test(err.message)) throw err;
        return { messages, close: null, end: err.message };
      }
      if (frame.opcode === OP.CLOSE) return { messages, close: parseClose(frame.payload) };
      if (frame.opcode === OP.TEXT) messages.push(JSON.parse(frame.payload.toString('utf8')));
    }
  }

  destroy() {
    this.ws.destroy();
  }
}
