// Two people in two browser contexts: sign in (guest and registered), chat in a room, presence,
// typing, a direct message, text that looks like HTML, a reload that resumes, and a server restart
// that both pages ride out by themselves with every message shown exactly once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import {
  countOf, launch, online, person, say, screenshot, signIn, texts, until, waitMessage,
} from './lib/browser.mjs';

let server;
let browser;
let alice; // registered
let bob; // guest
const ALICE = `alice${process.pid % 10000}`;
const BOB = `bob${process.pid % 10000}`;

before(async () => {
  server = await startChatServer();
  browser = await launch();
  alice = await person(browser, server);
  bob = await person(browser, server);
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

function noErrors(who, p) {
  assert.deepEqual(p.errors, [], `${who}'s console errors`);
  assert.deepEqual(p.dialogs, [], `${who}'s dialogs`);
}

test('signed out: the sign-in form', async () => {
  const page = alice.page;
  await page.getByRole('button', { name: 'Join as guest' }).waitFor();
  await page.getByLabel('Name', { exact: true }).waitFor();
  await screenshot(page, 'signed-out');
  // A wrong password is explained in words.
  await page.getByLabel('Name', { exact: true }).fill(ALICE);
  await page.locator('#signin-password').fill('not-registered');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await until(async () => /do not match/.test(await page.locator('#signin-error').textContent()), 'bad credentials in words');
});

test('a registered user and a guest sign in and meet in #general', async () => {
  await signIn(alice.page, ALICE, 'register', 'correct-horse-9');
  await signIn(bob.page, BOB, 'guest');
  for (const [p, other] of [[alice, BOB], [bob, ALICE]]) {
    await p.page.locator('#conv-title', { hasText: '#general' }).waitFor();
    await p.page.locator(`#members .member.online[data-user="${other}"]`).waitFor();
  }
  await alice.page.locator('#me', { hasText: ALICE }).waitFor();
  await bob.page.locator('#me', { hasText: `${BOB} (guest)` }).waitFor();
});

test('chat in a room, with typing and Shift+Enter', async () => {
  await say(alice.page, 'hello bob');
  await waitMessage(bob.page, 'hello bob');
  await waitMessage(alice.page, 'hello bob');
  // Typing shows on the other side.
  await bob.page.locator('#composer-text').pressSequentially('hi al', { delay: 20 });
  await alice.page.locator('#typing', { hasText: `${BOB} is typing` }).waitFor();
  await bob.page.locator('#composer-text').press('Shift+Enter');
  await bob.page.locator('#composer-text').pressSequentially('second line');
  await bob.page.locator('#composer-text').press('Enter');
  await waitMessage(alice.page, 'hi al\nsecond line');
  await until(async () => (await alice.page.locator('#typing').textContent()) === '', 'typing cleared by the message');
  assert.equal(await bob.page.locator('#composer-text').inputValue(), '');
  // Names and local times, grouped by sender.
  const group = alice.page.locator('#messages .group', { hasText: 'hi al' });
  await group.locator('.sender', { hasText: BOB }).waitFor();
  assert.match(await group.locator('time').first().textContent(), /\d/);
});

test('text that looks like HTML is shown as text', async () => {
  const evil = '<img src=x onerror=alert(1)>';
  await say(bob.page, evil);
  for (const p of [alice, bob]) {
    await waitMessage(p.page, evil);
    assert.equal(await p.page.locator('#messages img').count(), 0);
  }
  for (let i = 1; i <= 6; i++) await say(i % 2 ? alice.page : bob.page, `busy room line ${i}`);
  await waitMessage(alice.page, 'busy room line 6');
  await screenshot(alice.page, 'busy-room');
  noErrors('alice', alice);
  noErrors('bob', bob);
});

test('a direct message, with an unread badge', async () => {
  // Bob opens a DM to alice from the member list.
  await bob.page.locator(`#members button.member-name`, { hasText: ALICE }).click();
  await bob.page.locator('#conv-title', { hasText: ALICE }).waitFor();
  await say(bob.page, 'psst, just you');
  await waitMessage(bob.page, 'psst, just you');
  // Alice is in #general: the DM appears with an unread badge.
  const dm = alice.page.locator('#dm-list button', { hasText: BOB });
  await dm.locator('.badge', { hasText: '1' }).waitFor();
  await dm.click();
  await waitMessage(alice.page, 'psst, just you');
  await say(alice.page, 'got it');
  await waitMessage(bob.page, 'got it');
  await alice.page.locator('#conv-sub', { hasText: 'online' }).waitFor();
  await screenshot(alice.page, 'direct-message');
  // Not in the room.
  await alice.page.locator('#my-rooms button', { hasText: '#general' }).click();
  assert.equal(await countOf(alice.page, 'psst, just you'), 0);
});

test('a new room: created by joining, listed for others with its member count', async () => {
  await alice.page.getByLabel('Join or create a room').fill('lounge');
  await alice.page.getByLabel('Join or create a room').press('Enter');
  await alice.page.locator('#conv-title', { hasText: '#lounge' }).waitFor();
  await alice.page.locator('#my-rooms button', { hasText: '#lounge' }).waitFor();
  await say(alice.page, 'first in the lounge');
  await waitMessage(alice.page, 'first in the lounge');
  // Bob sees it among the other rooms (the list refreshes when he goes to pick a room).
  await bob.page.getByLabel('Join a room').focus(); // a guest: it cannot create one
  const lounge = bob.page.locator('#other-rooms button', { hasText: '#lounge' });
  await lounge.locator('.count', { hasText: '1' }).waitFor();
  // Alice leaves it again.
  await alice.page.getByRole('button', { name: 'Leave #lounge' }).click();
  await alice.page.locator('#conv-title', { hasText: '#general' }).waitFor();
  assert.equal(await alice.page.locator('#my-rooms button', { hasText: '#lounge' }).count(), 0);
});

test('a reload resumes the session and shows each message once', async () => {
  await bob.page.locator('#my-rooms button', { hasText: '#general' }).click();
  await alice.page.reload();
  await online(alice.page);
  await alice.page.locator('#conv-title', { hasText: '#general' }).waitFor();
  await waitMessage(alice.page, 'busy room line 6');
  await say(bob.page, 'after the reload');
  await waitMessage(alice.page, 'after the reload');
  const shown = await texts(alice.page);
  assert.equal(new Set(shown).size, shown.length, `duplicates after reload: ${shown}`);
  assert.ok(shown.includes('hello bob'));
  // The direct messages of a registered user come back too.
  await alice.page.locator('#dm-list button', { hasText: BOB }).click();
  await waitMessage(alice.page, 'psst, just you');
  assert.equal(await countOf(alice.page, 'got it'), 1);
  await alice.page.locator('#my-rooms button', { hasText: '#general' }).click();
  noErrors('alice', alice);
});

test('the network drops and comes back: what was said meanwhile shows once', async () => {
  alice.networkNoiseAllowed = true;
  await alice.context.setOffline(true);
  await alice.page.locator('#status', { hasText: 'Offline' }).waitFor();
  await say(bob.page, 'while alice was away 1');
  await say(bob.page, 'while alice was away 2');
  await waitMessage(bob.page, 'while alice was away 2');
  await alice.context.setOffline(false);
  await online(alice.page);
  await waitMessage(alice.page, 'while alice was away 2');
  const shown = await texts(alice.page);
  assert.equal(new Set(shown).size, shown.length, `duplicates: ${shown}`);
  assert.ok(shown.indexOf('while alice was away 1') < shown.indexOf('while alice was away 2'));
  alice.networkNoiseAllowed = false;
});

test('a server restart: offline, pending sends, reconnect, every message exactly once', async () => {
  const port = server.httpPort;
  alice.networkNoiseAllowed = bob.networkNoiseAllowed = true;
  await server.kill();
  for (const p of [alice, bob]) await p.page.locator('#status', { hasText: 'Offline' }).waitFor();
  // A message written while offline is shown as pending, then sent after the reconnect.
  await say(alice.page, 'sent while offline');
  await alice.page.locator('#pending .msg', { hasText: 'sent while offline' }).waitFor();
  await screenshot(alice.page, 'offline');
  server = await server.restart(['--http', `127.0.0.1:${port}`]);
  for (const p of [alice, bob]) await online(p.page);
  await waitMessage(bob.page, 'sent while offline');
  await until(async () => (await alice.page.locator('#pending .msg').count()) === 0, 'pending send acked');
  // Others keep talking; both pages see everything once.
  const carol = await seedClient(server, `carol${process.pid % 10000}`);
  await carol.request({ type: 'join', room: 'general' });
  await carol.send('general', 'carol after the restart');
  await say(bob.page, 'bob after the restart');
  for (const p of [alice, bob]) {
    await waitMessage(p.page, 'carol after the restart');
    await waitMessage(p.page, 'bob after the restart');
    const shown = await texts(p.page);
    assert.equal(new Set(shown).size, shown.length, `duplicates: ${shown}`);
    for (const t of ['hello bob', 'sent while offline', 'after the reload']) assert.equal(shown.filter((x) => x === t).length, 1, t);
  }
  carol.close();
  alice.networkNoiseAllowed = bob.networkNoiseAllowed = false;
});

test('presence: a person who leaves shows as offline', async () => {
  await bob.context.close();
  await alice.page.locator(`#members .member.offline[data-user="${BOB}"]`).waitFor();
  noErrors('alice', alice);
  noErrors('bob', bob);
});
