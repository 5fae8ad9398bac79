// A presence storm in a small room: 500 people leave at once while someone talks. The page
// renders its member list at most once per animation frame, so the chat message among the
// storm is not held back behind 500 renders of a 500-name list, and the list ends right.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { launch, person, signIn, until, waitMessage } from './lib/browser.mjs';

const CROWD = 500;
const ME = `watcher${process.pid % 10000}`;
let server;
let browser;

before(async () => {
  // A room never becomes large here (presence for everyone), and 500 connections from loopback.
  server = await startChatServer(['--presence-limit', '0', '--max-conns-per-ip', '0']);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('500 people leave at once: one member-list render per frame, the message among them shown', async () => {
  const p = await person(browser, server);
  const { page } = p;
  await signIn(page, ME);
  await page.locator('#conv-title', { hasText: '#general' }).waitFor();

  const crowd = [];
  for (let i = 0; i < CROWD; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, CROWD - i) }, (_, k) => seedClient(server, `crowd${i + k}`, { guest: true })));
    await Promise.all(batch.map((c) => c.request({ type: 'join', room: 'general' })));
    crowd.push(...batch);
  }
  const talker = await seedClient(server, 'talker');
  await talker.request({ type: 'join', room: 'general' });
  await page.locator('#members-h', { hasText: `Members (${CROWD + 2} online)` }).waitFor();

  // Count the list's renders by animation frame (a frame counter that runs before the page's own
  // frame callbacks).
  await page.evaluate(() => {
    window.frameNo = 0;
    const tick = () => {
      window.frameNo += 1;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    window.renderFrames = [];
    new MutationObserver(() => {
      window.renderFrames.push(window.frameNo);
      window.firstRenderAt ??= performance.now();
    }).observe(document.querySelector('#members'), { childList: true });
    // When the message shows, by the page's clock (a figure for docs/benchmarks.md, not asserted).
    new MutationObserver(() => {
      if (window.messageAt === undefined && document.querySelector('#messages').textContent.includes('after the storm')) {
        window.messageAt = performance.now();
      }
    }).observe(document.querySelector('#messages'), { childList: true, subtree: true, characterData: true });
  });

  for (const c of crowd) c.close();
  // The talker speaks once the server has told it of every departure, so the page gets its
  // message behind the 500 presence events.
  await until(() => talker.events.filter((e) => e.type === 'presence' && e.state === 'offline').length === CROWD,
    'the talker told of every departure', 30000);
  await talker.send('general', 'after the storm');
  await waitMessage(page, 'after the storm');
  await page.locator('#members-h', { hasText: 'Members (2 online)' }).waitFor();
  await until(async () => (await page.locator('#members .member.offline').count()) === CROWD, 'every departure shown');
  assert.equal(await page.locator(`#members .member.online[data-user="${ME}"]`).count(), 1);
  assert.equal(await page.locator('#members .member.online[data-user="talker"]').count(), 1);

  const frames = await page.evaluate(() => window.renderFrames);
  const { firstRenderAt, messageAt } = await page.evaluate(() => ({ firstRenderAt: window.firstRenderAt, messageAt: window.messageAt }));
  console.log(`# storm: ${CROWD} departures: ${frames.length} member-list renders; first render to the message shown ${(messageAt - firstRenderAt).toFixed(1)} ms`);
  assert.ok(frames.length >= 1, 'the list was rendered');
  assert.equal(new Set(frames).size, frames.length, `two renders in one frame: ${frames}`);
  assert.deepEqual(p.errors, []);
  talker.close();
});
