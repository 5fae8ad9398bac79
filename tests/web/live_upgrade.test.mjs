// The page through a live upgrade (the default mode): its WebSocket moves to the new process as it
// is. The page sees nothing at all: no close event, no second WebSocket, no notice, no error; what
// it sends and what others send before, during and after shows once each, in order.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Lineage } from '../upgrade/lib/upgrade.mjs';
import { seedClient } from './lib/seed.mjs';
import { countOf, launch, person, say, signIn, texts, until, waitMessage } from './lib/browser.mjs';

let lineage;
let browser;

before(async () => {
  lineage = await Lineage.start(null, ['--rate-limit', '0']);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await lineage?.dispose();
});

test('a live upgrade: the page keeps its WebSocket, sees no close, no notice, no error, and every message once', async () => {
  const p = await person(browser, lineage.server);
  const { page } = p;
  const sockets = [];
  const closes = [];
  page.on('websocket', (ws) => {
    sockets.push(ws.url());
    ws.on('close', () => closes.push(ws.url()));
  });
  await signIn(page, 'steady');
  // Every notice the page shows (an error, a warning, "reconnecting"), however briefly.
  await page.evaluate(() => {
    const el = document.querySelector('#notice');
    window.noticesShown = [];
    new MutationObserver(() => {
      if (!el.hidden) window.noticesShown.push(el.textContent);
    }).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
    // And every connection state it goes through (online, connecting, offline...).
    window.connStates = [];
    new MutationObserver(() => window.connStates.push(document.body.dataset.conn)).observe(document.body, {
      attributes: true,
      attributeFilter: ['data-conn'],
    });
  });
  const talker = await seedClient(lineage.server, 'talker');
  await talker.request({ type: 'join', room: 'general' });
  await talker.send('general', 'before the upgrade');
  await waitMessage(page, 'before the upgrade');
  await say(page, 'mine before');
  await waitMessage(page, 'mine before');
  assert.equal(sockets.length, 1);

  // Something sent by the page while the upgrade runs, and by others right after it.
  const sending = say(page, 'mine during');
  const { oldPid, newPid } = await lineage.upgrade();
  await sending;
  // The order asserted below is the server's: the talker speaks once the page's send is stored.
  await waitMessage(page, 'mine during');
  await talker.send('general', 'after the upgrade');
  await say(page, 'mine after');
  for (const text of ['mine during', 'after the upgrade', 'mine after']) await waitMessage(page, text);
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending send');
  const all = ['before the upgrade', 'mine before', 'mine during', 'after the upgrade', 'mine after'];
  for (const text of all) assert.equal(await countOf(page, text), 1, `"${text}" shown once`);
  const shown = await texts(page);
  assert.deepEqual(shown.filter((x) => /upgrade|mine/.test(x)), all);
  assert.deepEqual(closes, [], 'the page saw its WebSocket close');
  assert.equal(sockets.length, 1, 'the page opened no second WebSocket');
  assert.deepEqual(p.errors, []);
  assert.deepEqual(await page.evaluate(() => window.noticesShown), []);
  assert.deepEqual(await page.evaluate(() => window.connStates), [], 'the page never left its online state');
  // And it was indeed moved: the new process adopted it; the old one is gone.
  assert.ok(lineage.lines(newPid).some((l) => l.fields.msg === 'handover_adopted' && Number(l.fields.connections) >= 2));
  await lineage.waitLog(oldPid, 'stopped'); // it exits once it holds nothing, which may come after all of the above
  talker.close();
});
