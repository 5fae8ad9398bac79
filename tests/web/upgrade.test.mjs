// The page rides through an upgrade in drain mode: the old process closes its WebSocket with
// 1012, the page reconnects to the new one by itself, resumes with since, sends what was
// pending with its cid, and shows every message once, with no error.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Lineage } from '../upgrade/lib/upgrade.mjs';
import { seedClient } from './lib/seed.mjs';
import { countOf, launch, online, person, say, signIn, texts, until, waitMessage } from './lib/browser.mjs';

let lineage;
let browser;

before(async () => {
  lineage = await Lineage.start(null, ['--upgrade-mode', 'drain', '--drain-time', '1', '--rate-limit', '0']);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await lineage?.dispose();
});

test('drain mode: an upgrade: the page reconnects by itself, loses nothing, doubles nothing, shows no error', async () => {
  const p = await person(browser, lineage.server);
  const { page } = p;
  let sockets = 0;
  page.on('websocket', () => (sockets += 1));
  await signIn(page, 'rider');
  // Every notice the page shows (an error or a warning such as server_busy), however briefly.
  await page.evaluate(() => {
    const el = document.querySelector('#notice');
    window.noticesShown = [];
    new MutationObserver(() => {
      if (!el.hidden) window.noticesShown.push(el.textContent);
    }).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
  });
  const other = await seedClient(lineage.server, 'talker');
  await other.request({ type: 'join', room: 'general' });
  await other.send('general', 'before the upgrade');
  await waitMessage(page, 'before the upgrade');
  await say(page, 'mine before');
  await waitMessage(page, 'mine before');
  const socketsBefore = sockets;

  await lineage.upgrade();
  // Messages sent meanwhile from outside: on the new process once the old closed the talker.
  const talker = await seedClient(lineage.server, 'talker2');
  await talker.request({ type: 'join', room: 'general' });
  await talker.send('general', 'during the drain');
  await until(() => sockets > socketsBefore, 'the page to open a new WebSocket');
  await online(page);
  await say(page, 'mine after');
  // The order asserted below is the server's: the talker speaks once the page's send is stored.
  await waitMessage(page, 'mine after');
  await talker.send('general', 'after the upgrade');
  for (const text of ['during the drain', 'mine after', 'after the upgrade']) await waitMessage(page, text);
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending send');
  for (const text of ['before the upgrade', 'mine before', 'during the drain', 'mine after', 'after the upgrade']) {
    assert.equal(await countOf(page, text), 1, `"${text}" shown once`);
  }
  const shown = await texts(page);
  assert.deepEqual(
    shown.filter((x) => /upgrade|mine|drain/.test(x)),
    ['before the upgrade', 'mine before', 'during the drain', 'mine after', 'after the upgrade'],
  );
  // No error on the page: no console error, no notice.
  assert.deepEqual(p.errors, []);
  assert.deepEqual(await page.evaluate(() => window.noticesShown), []);
  talker.close();
  other.close();
});
