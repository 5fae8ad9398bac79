// The message box against the server's limits: a paste over 4000 characters is kept whole, with a
// counter in code points as the server counts them and a send button that says why it is off; and
// sends refused for the rate limit go out again in their order, later ones waiting behind them
// (seen on the wire through a Playwright WebSocket route).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { launch, person, say, screenshot, signIn, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startChatServer(['--rate-limit', '3']);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('(c) a long paste is not cut: a counter in code points, and a send button that says why it is off', async () => {
  const p = await person(browser, server, { colorScheme: 'dark' });
  const { page } = p;
  await signIn(page, 'paster');
  const box = page.locator('#composer-text');
  const send = page.locator('#send');
  const counter = page.locator('#counter');
  await box.focus();
  const long = 'x'.repeat(4100);
  await page.keyboard.insertText(long); // as a paste
  assert.equal(await box.inputValue(), long, 'the paste is kept whole');
  await counter.filter({ hasText: '4,100 / 4,000: too long to send, 100 over' }).waitFor();
  assert.equal(await send.isDisabled(), true);
  assert.match(await send.getAttribute('title'), /at most 4,000 characters/);
  await box.press('Enter');
  await page.locator('#notice', { hasText: 'too long' }).waitFor();
  assert.equal(await box.inputValue(), long, 'Enter does not drop it either');
  // 4000 code points that are 4001 UTF-16 units (an emoji), with trailing white space the server
  // trims: allowed, counted as the server counts, and accepted by it.
  const exact = `${'y'.repeat(3998)}é😀`;
  await box.fill(`${exact} \u3000\n`);
  await counter.filter({ hasText: /^4,000 \/ 4,000$/ }).waitFor();
  assert.equal(await send.isDisabled(), false);
  await box.press('Enter');
  await waitMessage(page, exact);
  assert.equal(await counter.isHidden(), true);
  await screenshot(page, 'composer-sent');
  assert.deepEqual(p.errors, []);
});

test('(b) sends refused for the rate limit are retried in order; later sends wait behind them', async () => {
  const wire = []; // {dir, type, cid, text, code}
  const p = await person(browser, server, {
    beforeLoad: (page) => page.routeWebSocket(/\/ws$/, (ws) => {
      const upstream = ws.connectToServer();
      const pending = new Map(); // request id -> cid
      ws.onMessage((m) => {
        const msg = JSON.parse(m);
        if (msg.type === 'send') {
          pending.set(msg.id, msg.cid);
          wire.push({ dir: 'out', cid: msg.cid, text: msg.text });
        }
        upstream.send(m);
      });
      upstream.onMessage((m) => {
        const msg = JSON.parse(m);
        if (pending.has(msg.id)) {
          wire.push({ dir: 'in', cid: pending.get(msg.id), type: msg.type, code: msg.code });
          pending.delete(msg.id);
        }
        ws.send(m);
      });
    }),
  });
  const { page } = p;
  await signIn(page, 'hasty');
  const N = 6;
  for (let i = 1; i <= 4; i++) await say(page, `in order ${i}`);
  await page.locator('#notice', { hasText: 'too quickly' }).waitFor();
  await page.locator('#pending .msg', { hasText: 'trying again' }).waitFor();
  // Typed after the refusal: waits behind the refused one.
  for (let i = 5; i <= N; i++) await say(page, `in order ${i}`);
  await page.locator('#pending .msg', { hasText: 'waiting for the message before it' }).first().waitFor();
  for (let i = 1; i <= N; i++) await waitMessage(page, `in order ${i}`);
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending sends', 30000);

  // On the wire: a refused send is the next one sent again, and the sends go out in order.
  const sends = wire.filter((w) => w.dir === 'out');
  const textOf = new Map(sends.map((w) => [w.cid, w.text]));
  assert.ok(wire.some((w) => w.code === 'rate_limited'), 'some sends were refused');
  let highest = 0;
  for (const w of sends) {
    const n = Number(w.text.split(' ').at(-1));
    assert.ok(n === highest || n === highest + 1, `send ${n} after ${highest}: ${JSON.stringify(sends.map((s) => s.text))}`);
    highest = n;
  }
  for (let i = 0; i < wire.length; i++) {
    if (wire[i].code !== 'rate_limited') continue;
    const next = wire.slice(i + 1).find((w) => w.dir === 'out');
    assert.equal(next && next.cid, wire[i].cid, `after the refusal of ${textOf.get(wire[i].cid)} it is sent again first`);
  }
  // And the room holds them once each, in order.
  const reader = await seedClient(server, 'reader');
  const history = await reader.request({ type: 'history', room: 'general', limit: 50 });
  reader.close();
  assert.deepEqual(history.messages.map((m) => m.text).filter((t) => t.startsWith('in order')),
    Array.from({ length: N }, (_, i) => `in order ${i + 1}`));
  assert.deepEqual(p.errors, []);
});
