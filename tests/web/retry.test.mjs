// A send whose ack is lost with the connection: the page shows it as pending, reconnects by
// itself, retries it with the same cid, and the message is stored and shown exactly once.
// The page's WebSocket goes through a Playwright route that swallows the ack (and the echo of
// the message) and then cuts the connection.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { countOf, launch, online, person, say, signIn, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startChatServer();
  browser = await launch();
  const greeter = await seedClient(server, 'greeter');
  await greeter.request({ type: 'join', room: 'general' });
  await greeter.send('general', 'hello');
  greeter.close();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('an unacked send is retried with its cid and shown once', async () => {
  const TEXT = 'lost ack, sent once';
  let swallow = true;
  let cut = false;
  let connections = 0;
  const p = await person(browser, server, {
    beforeLoad: (page) => page.routeWebSocket(/\/ws$/, (ws) => {
      connections += 1;
      const upstream = ws.connectToServer();
      ws.onMessage((m) => upstream.send(m));
      upstream.onMessage((m) => {
        const msg = JSON.parse(m);
        if (swallow && msg.type === 'message' && msg.text === TEXT) return;
        if (swallow && msg.type === 'ack' && msg.room === 'general') {
          swallow = false;
          cut = true;
          upstream.close();
          ws.close({ code: 1012, reason: 'test cuts the line' });
          return;
        }
        ws.send(m);
      });
    }),
  });
  const { page } = p;
  await signIn(page, 'retrier');
  await waitMessage(page, 'hello'); // sanity: the route passes ordinary traffic
  await say(page, TEXT);
  await until(() => cut, 'the connection to be cut after the ack');
  await online(page);
  await waitMessage(page, TEXT);
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending send');
  assert.ok(connections >= 2, 'the page reconnected');
  assert.equal(await countOf(page, TEXT), 1);
  // The server stored it once.
  const reader = await seedClient(server, 'auditor');
  const history = await reader.request({ type: 'history', room: 'general', limit: 50 });
  reader.close();
  assert.equal(history.messages.filter((m) => m.text === TEXT).length, 1);
  assert.deepEqual(p.errors, []);
});

test('a direct message whose ack is lost is sent again with the same cid, and arrives once', async () => {
  const TEXT = 'a private word, once';
  const friend = await seedClient(server, 'friend');
  let swallow = true;
  let cut = false;
  const sends = new Map(); // cid -> times the page sent it
  const p = await person(browser, server, {
    beforeLoad: (page) => page.routeWebSocket(/\/ws$/, (ws) => {
      const upstream = ws.connectToServer();
      ws.onMessage((m) => {
        const msg = JSON.parse(m);
        if (msg.type === 'send' && msg.text === TEXT) sends.set(msg.cid, (sends.get(msg.cid) || 0) + 1);
        upstream.send(m);
      });
      upstream.onMessage((m) => {
        const msg = JSON.parse(m);
        if (swallow && msg.type === 'message' && msg.text === TEXT) return;
        if (swallow && msg.type === 'ack' && msg.room.startsWith('dm:')) {
          swallow = false;
          cut = true;
          upstream.close();
          ws.close({ code: 1012, reason: 'test cuts the line' });
          return;
        }
        ws.send(m);
      });
    }),
  });
  const { page } = p;
  await signIn(page, 'whisperer');
  await page.getByLabel('Message someone').fill('friend');
  await page.getByLabel('Message someone').press('Enter');
  await page.locator('#conv-title', { hasText: 'friend' }).waitFor();
  await say(page, TEXT);
  await until(() => cut, 'the connection to be cut after the ack');
  await online(page);
  await waitMessage(page, TEXT);
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending send');
  assert.equal(await countOf(page, TEXT), 1);
  assert.equal(sends.size, 1, 'one cid');
  assert.equal([...sends.values()][0], 2, 'sent twice with that cid');
  // The friend (a guest, live only) got it once: the retry was a duplicate, delivered to nobody.
  await friend.request({ type: 'ping' });
  friend.close();
  assert.equal(friend.events.filter((m) => m.type === 'message' && m.text === TEXT).length, 1);
  assert.deepEqual(p.errors, []);
});
