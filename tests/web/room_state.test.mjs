// A room's topic and people's away status on the web page (protocol 1.1 rules 58, 59, 69, 70):
// alice owns #plans and sets its topic, which bob (a guest on a phone in the dark theme) sees
// but cannot change; alice goes away with a text on one device, which her other device and
// bob's member list show, and comes back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { launch, person, signIn, until } from './lib/browser.mjs';

const PASSWORD = 'alice-password-1';
let server;
let browser;
let alice;
let alice2;
let bob;

async function openRoom(page, name) {
  await page.locator('#join-name').fill(name);
  await page.locator('#join-name').press('Enter');
  await until(async () => (await page.locator('#conv-title').textContent()) === '#' + name, `#${name} open`);
}

before(async () => {
  server = await startChatServer();
  browser = await launch();
  alice = await person(browser, server);
  await signIn(alice.page, 'alice', 'register', PASSWORD);
  await openRoom(alice.page, 'plans');
  bob = await person(browser, server, { viewport: { width: 390, height: 740 }, colorScheme: 'dark', touch: true });
  await signIn(bob.page, 'bob');
  await bob.page.locator('#nav-toggle').click();
  await openRoom(bob.page, 'plans');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('the owner sets and clears the topic; a member sees it and has no control for it', async () => {
  assert.ok(await bob.page.locator('#topic-bar').isHidden(), 'no topic, and bob may not set one');
  await alice.page.getByRole('button', { name: 'Set a topic' }).click();
  await alice.page.getByLabel('Topic').fill('Release on Friday');
  await alice.page.getByLabel('Topic').press('Enter');
  await until(async () => (await bob.page.locator('#topic').textContent()) === 'Release on Friday', 'the topic on bob\'s phone');
  assert.ok(await bob.page.locator('#topic-bar').isVisible());
  assert.ok(await bob.page.locator('#topic-edit').isHidden(), 'a member cannot edit it');
  await until(async () => (await alice.page.locator('#topic').textContent()) === 'Release on Friday', 'and on alice\'s page');
  // A member who joins later gets it from `joined`.
  const carol = await person(browser, server);
  await signIn(carol.page, 'carol');
  await openRoom(carol.page, 'plans');
  // The title changes as the join is sent; the topic comes with `joined`, so it is awaited.
  await until(async () => (await carol.page.locator('#topic').textContent()) === 'Release on Friday', 'the topic for a later member');
  assert.ok(await carol.page.locator('#topic-edit').isHidden(), 'a later member cannot edit it either');
  await carol.context.close();
  // Cleared: an empty text.
  await alice.page.getByRole('button', { name: 'Edit topic' }).click();
  await alice.page.getByLabel('Topic').fill('');
  await alice.page.getByLabel('Topic').press('Enter');
  await until(() => bob.page.locator('#topic-bar').isHidden(), 'no topic bar for bob once cleared');
  await until(async () => (await alice.page.getByRole('button', { name: 'Set a topic' }).count()) === 1, 'alice may set one again');
});

test('away with a text: shown to the others, and on the user\'s other device; then back', async () => {
  alice2 = await person(browser, server);
  await signIn(alice2.page, 'alice', 'login', PASSWORD);
  const aliceRow = bob.page.locator('#members li[data-user="alice"] .presence');
  await alice.page.getByLabel('Status').fill('lunch');
  await alice.page.getByRole('button', { name: 'Away', exact: true }).click();
  await until(async () => (await aliceRow.textContent()) === 'away: lunch', 'alice away on bob\'s list');
  await until(async () => (await alice2.page.locator('#away-btn').textContent()) === 'Back', 'the other device knows she is away');
  assert.equal(await alice2.page.getByLabel('Status').inputValue(), 'lunch');
  await alice2.page.getByRole('button', { name: 'Back', exact: true }).click();
  await until(async () => (await aliceRow.textContent()) === 'online', 'back online on bob\'s list');
  await until(async () => (await alice.page.locator('#away-btn').textContent()) === 'Away', 'and on the first device');
  for (const p of [alice, alice2, bob]) assert.deepEqual(p.errors, []);
});
