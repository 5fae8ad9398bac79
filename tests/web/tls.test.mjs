// The web page served over HTTPS by parley itself (--tls-cert/--tls-key): Chromium loads it, the
// page picks wss:// for its WebSocket, a guest signs in, joins a room, sends and sees its message,
// and another client over wss sees it too; no console errors.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { ChatClient, PASSWORD, uniq } from '../chat/lib/chat.mjs';
import { certDir, makeCert } from '../blackbox/lib/tls.mjs';
import { launch, person, say, signIn, until, waitMessage } from './lib/browser.mjs';

let dir;
let server;
let browser;
let me;

before(async () => {
  dir = certDir();
  server = await startChatServer([], { tls: makeCert(dir.dir) });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
  dir?.remove();
});

test('the page over HTTPS chats over wss://', async (t) => {
  const sockets = [];
  me = await person(browser, server, {
    beforeLoad: (page) => page.on('websocket', (ws) => sockets.push(ws.url())),
  });
  const page = me.page;
  assert.match(page.url(), /^https:\/\/127\.0\.0\.1:\d+\/$/);
  const name = uniq('web');
  await signIn(page, name, 'guest');
  assert.ok(sockets.length >= 1, 'the page opened a WebSocket');
  for (const url of sockets) assert.match(url, new RegExp(`^wss://127\\.0\\.0\\.1:${server.httpPort}/ws$`));
  const room = `tls${process.pid % 10000}`;
  const watcher = await ChatClient.connect(server, { label: 'watcher' });
  t.after(() => watcher.terminate());
  const watcherName = uniq('watch');
  await watcher.register(watcherName); // a registered user's join makes the room (rule 60)
  await watcher.login(watcherName, PASSWORD);
  await watcher.join(room);
  await page.locator('#join-name').fill(room);
  await page.locator('#join-name').press('Enter');
  await page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
  await say(page, 'sent from a page served over HTTPS');
  await waitMessage(page, 'sent from a page served over HTTPS');
  const m = await watcher.nextMessage(room);
  assert.equal(m.from, name);
  assert.equal(m.text, 'sent from a page served over HTTPS');
  await watcher.say(room, 'seen by the page');
  await waitMessage(page, 'seen by the page');
  await until(async () => (await page.locator('body').getAttribute('data-conn')) === 'online', 'still online');
  assert.deepEqual(me.errors, [], 'console errors');
});
