// The page in Chromium, which offers permessage-deflate: the server accepts it, Chromium's
// compressed sends are inflated, and room messages reach the page compressed and read right.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { scrape, sum } from '../chat/lib/metrics.mjs';
import { launch, person, say, signIn, waitMessage } from './lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startChatServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const counters = async () => {
  const m = await scrape(server);
  return {
    inflated: sum(m, 'parley_inflated_messages_total'),
    shared: sum(m, 'parley_deflate_messages_total', { kind: 'shared' }),
  };
};

test('two pages chat over permessage-deflate, both ways', async () => {
  const extensions = [];
  const p = await person(browser, server, {
    // The upgrade's response headers, as Chromium saw them.
    beforeLoad: async (page) => {
      const cdp = await page.context().newCDPSession(page);
      await cdp.send('Network.enable');
      cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
        const h = Object.entries(e.response.headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
        extensions.push(h ? h[1] : '');
      });
    },
  });
  const q = await person(browser, server);
  await signIn(p.page, `zip${process.pid % 10000}`, 'guest');
  await signIn(q.page, `zap${process.pid % 10000}`, 'guest');
  assert.ok(extensions.length >= 1, 'no WebSocket handshake seen');
  assert.match(extensions[0], /^permessage-deflate; server_no_context_takeover; client_no_context_takeover/);

  const before = await counters();
  const text = `a message long enough to be compressed: ${'la la land, '.repeat(12)}the end`;
  await say(p.page, text);
  await waitMessage(p.page, text);
  await waitMessage(q.page, text);
  const after = await counters();
  assert.ok(after.inflated > before.inflated, 'Chromium did not send its request compressed');
  assert.ok(after.shared > before.shared, 'the room message was not compressed for the pages');
  for (const x of [p, q]) assert.deepEqual(x.errors, [], 'console errors');
});
