// Attention: the tab title counts unread messages while the tab is hidden (the open conversation
// too), a mention or a direct message raises a notification once the person turned them on with
// the button (never asked at load) and a beep when sound is on, and on a phone the menu button
// carries a badge while another conversation has unread messages.
// Headless Chromium never hides a tab, so the page's document.hidden is driven by the test (an
// init script), as are the Notification API (recording what the page asks and shows) and a count
// of the oscillators the page starts.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { launch, person, say, screenshot, signIn, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;
let alice;
let bob;

function instrument() {
  let hidden = false;
  Object.defineProperty(document, 'hidden', { get: () => hidden });
  Object.defineProperty(document, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible') });
  window.setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event('visibilitychange'));
  };
  window.notes = [];
  window.asked = 0;
  let permission = 'default';
  window.Notification = class {
    constructor(title, options) { window.notes.push({ title, body: options.body }); }
    close() {}
    static get permission() { return permission; }
    static requestPermission() {
      window.asked += 1;
      permission = 'granted';
      return Promise.resolve(permission);
    }
  };
  window.beeps = 0;
  const start = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function createOscillator() {
    window.beeps += 1;
    return start.call(this);
  };
}

before(async () => {
  server = await startChatServer();
  browser = await launch();
  alice = await person(browser, server, { beforeLoad: (page) => page.addInitScript(instrument) });
  bob = await person(browser, server);
  await signIn(alice.page, 'alice');
  await signIn(bob.page, 'bob');
  await alice.page.locator('#members .member.online[data-user="bob"]').waitFor();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const probe = (p) => p.page.evaluate(() => ({ title: document.title, notes: window.notes, asked: window.asked, beeps: window.beeps }));

test('nothing is asked at load; the button asks, the box turns the sound on', async () => {
  const { page } = alice;
  assert.equal((await probe(alice)).asked, 0);
  await page.getByRole('button', { name: 'Turn on notifications' }).click();
  await page.getByRole('button', { name: 'Turn off notifications' }).waitFor();
  assert.equal((await probe(alice)).asked, 1);
  await page.getByLabel('Play a sound').check();
  assert.equal((await probe(alice)).beeps, 1, 'a beep to hear what it sounds like');
});

test('hidden: the title counts the open conversation; mentions and DMs notify, other messages not', async () => {
  const { page } = alice;
  await page.evaluate(() => window.setHidden(true));
  await say(bob.page, 'plain hello');
  await say(bob.page, 'mail alice@example.org or @alicex');
  await until(async () => (await probe(alice)).title === '(2) parley', 'two unread in the title');
  await say(bob.page, 'hey @Alice, look');
  await until(async () => (await probe(alice)).title === '(3) parley', 'three unread');
  await bob.page.locator('#members button.member-name', { hasText: 'alice' }).click();
  await say(bob.page, 'just between us');
  await until(async () => (await probe(alice)).notes.length === 2, 'two notifications');
  const seen = await probe(alice);
  assert.deepEqual(seen.notes, [
    { title: 'bob in #general', body: 'hey @Alice, look' },
    { title: 'bob (direct message)', body: 'just between us' },
  ]);
  assert.equal(seen.beeps, 3);
  assert.equal(seen.title, '(4) parley');
  // Back to the tab: the open conversation is read, the direct message is not.
  await page.evaluate(() => window.setHidden(false));
  await until(async () => (await probe(alice)).title === '(1) parley', 'the open conversation read');
  await waitMessage(page, 'hey @Alice, look');
  // Visible and in the conversation: nothing is counted, nothing notified.
  await bob.page.locator('#my-rooms button', { hasText: '#general' }).click();
  await say(bob.page, 'seen at once, @alice');
  await waitMessage(page, 'seen at once, @alice');
  assert.equal((await probe(alice)).title, '(1) parley');
  assert.equal((await probe(alice)).notes.length, 2);
  // Turned off: no more notifications.
  await page.getByRole('button', { name: 'Turn off notifications' }).click();
  await page.evaluate(() => window.setHidden(true));
  await say(bob.page, '@alice again');
  await until(async () => (await probe(alice)).title === '(2) parley', 'counted');
  assert.equal((await probe(alice)).notes.length, 2);
  await page.evaluate(() => window.setHidden(false));
  assert.deepEqual(alice.errors, []);
});

test('on a phone, the menu button has a badge while another conversation has unread messages', async () => {
  const carol = await person(browser, server, { viewport: { width: 390, height: 740 }, colorScheme: 'dark' });
  const { page } = carol;
  await signIn(page, 'carol');
  const menu = page.locator('#nav-toggle');
  assert.equal(await menu.evaluate((el) => el.classList.contains('has-unread')), false);
  await say(bob.page, 'in the room carol is looking at');
  await waitMessage(page, 'in the room carol is looking at');
  assert.equal(await menu.evaluate((el) => el.classList.contains('has-unread')), false);
  await bob.page.getByLabel('Message someone').fill('carol');
  await bob.page.getByLabel('Message someone').press('Enter');
  await say(bob.page, 'psst carol');
  await page.getByRole('button', { name: 'Conversations (1 unread)' }).waitFor();
  const dot = await menu.evaluate((el) => getComputedStyle(el, '::after').content);
  assert.notEqual(dot, 'none');
  await screenshot(page, 'phone-menu-badge-dark');
  await menu.click();
  await page.locator('#dm-list button', { hasText: 'bob' }).click();
  await waitMessage(page, 'psst carol');
  await until(async () => !(await menu.evaluate((el) => el.classList.contains('has-unread'))), 'the badge gone');
  assert.equal(await menu.getAttribute('aria-label'), 'Conversations');
  assert.deepEqual(carol.errors, []);
});
