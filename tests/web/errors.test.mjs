// Errors from the server are shown where the person is looking, in words: a text too long for the
// server's limit comes back to the composer, and sends over the rate limit wait as pending and go
// out once the server takes them again, each once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { countOf, launch, person, say, signIn, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startChatServer(['--max-text', '40', '--rate-limit', '3']);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('too long and rate limited, in words', async () => {
  const p = await person(browser, server);
  const { page } = p;
  await signIn(page, 'talker');
  const long = 'this message is longer than forty characters, sadly';
  await say(page, long);
  const notice = page.locator('#notice');
  await notice.filter({ hasText: 'too long' }).waitFor();
  assert.doesNotMatch(await notice.textContent(), /too_long/);
  assert.equal(await page.locator('#composer-text').inputValue(), long);
  await page.locator('#composer-text').fill('');
  // Five sends against a bucket of three.
  for (let i = 1; i <= 5; i++) await say(page, `quick ${i}`);
  await notice.filter({ hasText: 'too quickly' }).waitFor();
  await page.locator('#pending .msg', { hasText: 'quick' }).first().waitFor();
  for (let i = 1; i <= 5; i++) await waitMessage(page, `quick ${i}`);
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending sends left', 20000);
  for (let i = 1; i <= 5; i++) assert.equal(await countOf(page, `quick ${i}`), 1);
  assert.deepEqual(p.errors, []);
});

test('a guest keeps its name by registering it, then signs in with the password', async () => {
  const p = await person(browser, server);
  const { page } = p;
  await signIn(page, 'keeper');
  await page.locator('#me', { hasText: 'keeper (guest)' }).waitFor();
  await page.getByLabel('Keep the name keeper: choose a password').fill('short');
  await page.getByRole('button', { name: 'Register', exact: true }).click();
  await page.locator('#account .error', { hasText: 'at least 8' }).waitFor();
  await page.getByLabel('Keep the name keeper: choose a password').fill('keeper-password');
  await page.getByRole('button', { name: 'Register', exact: true }).click();
  await until(async () => (await page.locator('#me').textContent()) === 'keeper', 'the name without (guest)');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Join as guest' }).waitFor();
  await signIn(page, 'keeper', 'login', 'keeper-password');
  await page.locator('#me', { hasText: 'keeper' }).waitFor();
  assert.equal(await page.locator('#account form').count(), 0);
  assert.deepEqual(p.errors, []);
});

test('keyboard only, with labelled controls', async () => {
  const p = await person(browser, server);
  const { page } = p;
  // The name field has focus on arrival; Enter joins as a guest.
  await page.keyboard.type('typist');
  await page.keyboard.press('Enter');
  await page.locator('body[data-conn="online"]').waitFor({ state: 'attached' });
  // The message box has focus after signing in and is labelled for screen readers.
  const box = page.getByRole('textbox', { name: 'Message #general' });
  await until(() => box.evaluate((el) => el === document.activeElement), 'focus in the message box');
  await page.keyboard.type('typed, not clicked');
  await page.keyboard.press('Enter');
  await page.getByRole('log', { name: 'Messages' }).getByText('typed, not clicked').waitFor();
  for (const name of ['Send', 'Join', 'Open', 'Sign out', 'Leave #general']) {
    assert.equal(await page.getByRole('button', { name, exact: true }).count(), 1, name);
  }
  for (const name of ['Join a room', 'Message someone']) {
    assert.equal(await page.getByRole('textbox', { name }).count(), 1, name);
  }
  await page.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: '#general' }).waitFor();
  assert.deepEqual(p.errors, []);
});

test('a throttled sign-in says how long to wait', async () => {
  const p = await person(browser, server);
  const { page } = p;
  await signIn(page, 'guarded', 'register', 'guarded-password');
  await page.getByRole('button', { name: 'Sign out' }).click();
  const error = page.locator('#signin-error');
  // Five wrong passwords are checked; the sixth is refused before any check.
  for (let i = 1; i <= 5; i++) {
    await page.getByLabel('Name', { exact: true }).fill('guarded');
    await page.locator('#signin-password').fill(`wrong-password-${i}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await error.filter({ hasText: 'do not match' }).waitFor();
    await page.evaluate(() => {
      document.querySelector('#signin-error').textContent = '';
    });
  }
  await page.locator('#signin-password').fill('wrong-password-6');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await error.filter({ hasText: /^Too many failed logins from your address; try again in \d+ s\.$/ }).waitFor();
  assert.deepEqual(p.errors, []);
});
