// Regressions of the bugs found by trying the page, with two people (alice registered, bob a
// guest): a draft per conversation, typing announced again right after a send, a guest's direct
// messages after a reload, a direct message to no one that can be closed and is not kept, members
// who are not back after a restart shown offline, and the offline banner on a phone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import {
  countOf, launch, online, person, say, screenshot, signIn, until, waitMessage,
} from './lib/browser.mjs';

let server;
let browser;
let alice;
let bob;
const ALICE = `alice${process.pid % 10000}`;
const BOB = `bob${process.pid % 10000}`;

before(async () => {
  server = await startChatServer();
  browser = await launch();
  alice = await person(browser, server);
  bob = await person(browser, server);
  await signIn(alice.page, ALICE, 'register', 'correct-horse-9');
  await signIn(bob.page, BOB, 'guest');
  for (const [p, other] of [[alice, BOB], [bob, ALICE]]) {
    await p.page.locator(`#members .member.online[data-user="${other}"]`).waitFor();
  }
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const box = (p) => p.page.locator('#composer-text');
const openRoom = (p, name) => p.page.locator('#my-rooms button', { hasText: `#${name}` }).click();

// Each test starts with both in #general, whatever the one before left.
async function inGeneral() {
  for (const p of [alice, bob]) {
    await openRoom(p, 'general');
    await p.page.locator('#conv-title', { hasText: '#general' }).waitFor();
    await box(p).fill('');
  }
}

test('(a) a draft stays in its conversation: a private draft never follows into a room', async () => {
  const { page } = alice;
  await page.locator('#members button.member-name', { hasText: BOB }).click();
  await page.locator('#conv-title', { hasText: BOB }).waitFor();
  await box(alice).fill('for bob only');
  await openRoom(alice, 'general');
  await page.locator('#conv-title', { hasText: '#general' }).waitFor();
  assert.equal(await box(alice).inputValue(), '');
  await box(alice).press('Enter'); // nothing to send here
  await box(alice).fill('a room draft');
  await page.locator('#dm-list button', { hasText: BOB }).click();
  await page.locator('#conv-title', { hasText: BOB }).waitFor();
  assert.equal(await box(alice).inputValue(), 'for bob only');
  await openRoom(alice, 'general');
  assert.equal(await box(alice).inputValue(), 'a room draft');
  await box(alice).fill('');
  await say(page, 'public line');
  await waitMessage(bob.page, 'public line');
  assert.equal(await countOf(bob.page, 'for bob only'), 0);
  assert.equal(await countOf(page, 'for bob only'), 0);
});

test('(d) typing is announced again right after a send', async () => {
  await inGeneral();
  await box(bob).pressSequentially('first', { delay: 20 });
  await alice.page.locator('#typing', { hasText: `${BOB} is typing` }).waitFor();
  await box(bob).press('Enter');
  await box(bob).pressSequentially('more', { delay: 20 });
  await waitMessage(alice.page, 'first');
  // The message ended the first "typing"; the keys after it announce it again.
  await alice.page.locator('#typing', { hasText: `${BOB} is typing` }).waitFor();
  await box(bob).fill('');
});

test('(e) a guest\'s direct message after a reload says the history is not kept', async () => {
  const { page } = bob;
  await page.locator('#members button.member-name', { hasText: ALICE }).click();
  await page.locator('#conv-title', { hasText: ALICE }).waitFor();
  await say(page, 'a guest says hi');
  await waitMessage(page, 'a guest says hi');
  await page.reload();
  await online(page);
  await page.locator('#dm-list button', { hasText: ALICE }).click();
  await page.locator('#conv-title', { hasText: ALICE }).waitFor();
  const older = page.locator('#older');
  await older.filter({ hasText: 'Direct messages of guests are not kept' }).waitFor();
  assert.doesNotMatch(await older.textContent(), /No messages yet/);
  await screenshot(page, 'guest-dm-after-reload');
  await openRoom(bob, 'general');
});

test('(f) a direct message to a name that does not exist can be closed and is not kept', async () => {
  await inGeneral();
  const { page } = alice;
  const NOBODY = 'nobody-here';
  await page.getByLabel('Message someone').fill(NOBODY);
  await page.getByLabel('Message someone').press('Enter');
  await page.locator('#conv-title', { hasText: NOBODY }).waitFor();
  await say(page, 'anyone there?');
  await page.locator('#notice', { hasText: 'no one by that name' }).waitFor();
  assert.equal(await box(alice).inputValue(), 'anyone there?');
  await page.getByRole('button', { name: `Close ${NOBODY}` }).click();
  await page.locator('#conv-title', { hasText: '#general' }).waitFor();
  assert.equal(await page.locator('#dm-list button', { hasText: NOBODY }).count(), 0);
  assert.equal(await box(alice).inputValue(), '');
  await page.reload();
  await online(page);
  await page.locator('#conv-title', { hasText: '#general' }).waitFor();
  await page.locator('#dm-list button', { hasText: BOB }).waitFor();
  assert.equal(await page.locator('#dm-list button', { hasText: NOBODY }).count(), 0);
  assert.doesNotMatch(await page.evaluate(() => localStorage.getItem('parley.v1')), new RegExp(NOBODY));
});

test('(g) after a server restart, members not back yet show as offline', async () => {
  await inGeneral();
  const carol = await seedClient(server, 'carol');
  await carol.request({ type: 'join', room: 'general' });
  await alice.page.locator('#members .member.online[data-user="carol"]').waitFor();
  const port = server.httpPort;
  alice.networkNoiseAllowed = bob.networkNoiseAllowed = true;
  await server.kill();
  server = await server.restart(['--http', `127.0.0.1:${port}`]);
  for (const p of [alice, bob]) await online(p.page);
  await alice.page.locator(`#members .member.online[data-user="${BOB}"]`).waitFor();
  await alice.page.locator('#members .member.offline[data-user="carol"]').waitFor();
  await alice.page.locator('#members-h', { hasText: 'Members (2 online)' }).waitFor();
  carol.close();
  alice.networkNoiseAllowed = bob.networkNoiseAllowed = false;
});

test('(h) the offline banner fits a phone screen and covers no message', async () => {
  const p = await person(browser, server, { viewport: { width: 360, height: 640 }, colorScheme: 'dark' });
  const { page } = p;
  await signIn(page, 'phoney');
  for (let i = 1; i <= 12; i++) await say(page, `phone line ${i}`);
  await waitMessage(page, 'phone line 12');
  p.networkNoiseAllowed = true;
  await p.context.setOffline(true);
  const banner = page.locator('#status', { hasText: 'Offline' });
  await banner.waitFor();
  const geo = await page.evaluate(() => {
    const r = (sel) => document.querySelector(sel).getBoundingClientRect().toJSON();
    const bar = document.querySelector('#status');
    return {
      bar: r('#status'), log: r('#log'), topbar: r('.topbar'), composer: r('#composer'),
      overflow: bar.scrollWidth - bar.clientWidth, width: innerWidth, height: innerHeight,
      last: [...document.querySelectorAll('#messages .msg')].at(-1).getBoundingClientRect().toJSON(),
    };
  });
  assert.ok(geo.bar.left >= 0 && geo.bar.right <= geo.width, `banner within the width: ${JSON.stringify(geo.bar)}`);
  assert.ok(geo.overflow <= 0, 'banner text fits');
  assert.ok(geo.bar.bottom <= geo.topbar.top + 0.5, `banner above the top bar: ${JSON.stringify(geo)}`);
  assert.ok(geo.bar.bottom <= geo.log.top, 'banner does not cover the messages');
  assert.ok(geo.last.top >= geo.log.top && geo.last.bottom <= geo.log.bottom + 0.5, `last message visible: ${JSON.stringify(geo)}`);
  assert.ok(geo.composer.bottom <= geo.height + 0.5, 'the message box is still on screen');
  await screenshot(page, 'phone-offline-dark');
  await p.context.setOffline(false);
  await online(page);
  assert.deepEqual(p.errors, []);
  await p.context.close();
});

test('no console errors', () => {
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});
