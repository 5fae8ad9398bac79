// Scroll-back: a room with more history than one page; scrolling up loads older messages until
// the beginning, each shown once, and the line of a topic set among them stays in its place. On a
// phone-sized screen in the dark theme.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { launch, person, screenshot, signIn, texts, until, waitMessage } from './lib/browser.mjs';

const TOTAL = 130;
const TOPIC_AFTER = 39; // in the page's first replay, with older pages loaded in front of it
let server;
let browser;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
  browser = await launch();
  const seed = await seedClient(server, 'archivist');
  await seed.request({ type: 'join', room: 'archive' });
  for (let i = 1; i <= TOTAL; i++) {
    await seed.send('archive', `archived line ${i}`);
    if (i === TOPIC_AFTER) await seed.request({ type: 'topic', room: 'archive', text: 'the archive' });
  }
  seed.close();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('older history loads on scroll, on a phone-sized screen', async () => {
  const p = await person(browser, server, { viewport: { width: 390, height: 740 }, colorScheme: 'dark' });
  const { page } = p;
  await signIn(page, 'reader');
  // The room list lives in a drawer on a narrow screen.
  await page.getByRole('button', { name: 'Conversations' }).click();
  await page.locator('#join-name').fill('archive');
  await page.locator('#join-name').press('Enter');
  await page.locator('#conv-title', { hasText: '#archive' }).waitFor();
  await waitMessage(page, `archived line ${TOTAL}`);
  const first = await texts(page);
  assert.ok(first.length < TOTAL, `only a page of history at first, got ${first.length}`);
  assert.ok(!first.includes('archived line 1'));
  // Scroll to the top until the beginning shows.
  await until(async () => {
    await page.locator('#log').evaluate((el) => { el.scrollTop = 0; });
    return (await page.locator('#older').textContent()).includes('beginning');
  }, 'the beginning of the room');
  const all = await texts(page);
  assert.equal(all.length, TOTAL);
  assert.deepEqual(all, Array.from({ length: TOTAL }, (_, i) => `archived line ${i + 1}`));
  const lines = await page.locator('#messages .msg-text, #messages .sys-text').allTextContents();
  assert.equal(lines.length, TOTAL + 1);
  assert.equal(lines[TOPIC_AFTER], 'archivist set the topic: the archive');
  await screenshot(page, 'phone-dark');
  assert.deepEqual(p.errors, []);
});
