// @mentions on the web page between three people, one of them on a phone in the dark theme:
// completion of names in the message box (arrow keys, Enter and Tab take a name, Escape closes),
// the messages that name you marked (from the server's `mentions`), and a tap on a phone that
// opens a message's actions.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { launch, person, screenshot, signIn, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;
let alice;
let bob;
let carol;

before(async () => {
  server = await startChatServer();
  browser = await launch();
  alice = await person(browser, server);
  bob = await person(browser, server);
  carol = await person(browser, server, { viewport: { width: 390, height: 740 }, colorScheme: 'dark', touch: true });
  await signIn(alice.page, 'alice');
  await signIn(bob.page, 'bob');
  await signIn(carol.page, 'carol');
  await until(async () => (await carol.page.locator('#members li').count()) === 3, 'all three listed on carol\'s page');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const item = (page, text) => page.locator('#messages li.msg', { has: page.locator('.msg-text', { hasText: text }) });
const options = (page) => page.locator('#mention-list [role="option"]').evaluateAll((os) => os.map((o) => `${o.textContent}${o.getAttribute('aria-selected') === 'true' ? '*' : ''}`));

test('completion: @ offers the room\'s members, arrows choose, Enter and Tab take, Escape closes', async () => {
  const { page } = carol;
  const box = page.locator('#composer-text');
  await box.pressSequentially('hi @');
  assert.deepEqual(await options(page), ['@alice*', '@bob'], 'everyone but me, the first chosen');
  await box.press('ArrowDown');
  assert.deepEqual(await options(page), ['@alice', '@bob*']);
  assert.equal(await box.getAttribute('aria-activedescendant'), 'mention-1');
  await box.press('Enter');
  assert.equal(await box.inputValue(), 'hi @bob ', 'Enter took the name and did not send');
  assert.ok(await page.locator('#mention-list').isHidden());
  await box.pressSequentially('and @AL');
  assert.deepEqual(await options(page), ['@alice*'], 'case does not matter');
  await box.press('Tab');
  assert.equal(await box.inputValue(), 'hi @bob and @alice ');
  await box.pressSequentially('@');
  await box.press('Escape');
  assert.ok(await page.locator('#mention-list').isHidden(), 'Escape closes the list');
  assert.equal(await box.inputValue(), 'hi @bob and @alice @');
  await box.press('Backspace');
  await box.press('Enter');
  await waitMessage(bob.page, 'hi @bob and @alice');
  await waitMessage(alice.page, 'hi @bob and @alice');
  // An address is not a mention: no list after a word character.
  await box.pressSequentially('mail me at carol@b');
  assert.ok(await page.locator('#mention-list').isHidden());
  await box.fill('');
  // A whole name typed closes the list, so Enter sends.
  await box.pressSequentially('thanks @bo');
  assert.deepEqual(await options(page), ['@bob*']);
  await box.pressSequentially('b');
  assert.ok(await page.locator('#mention-list').isHidden());
  await box.press('Enter');
  await waitMessage(bob.page, 'thanks @bob');
});

test('a message that names you is marked, for you only', async () => {
  const { page } = carol;
  await page.locator('#composer-text').fill('just @bob this time');
  await page.locator('#composer-text').press('Enter');
  await waitMessage(alice.page, 'just @bob this time');
  await waitMessage(bob.page, 'just @bob this time');
  const marked = (p, text) => item(p, text).evaluate((li) => li.classList.contains('mention'));
  assert.equal(await marked(bob.page, 'hi @bob and @alice'), true);
  assert.equal(await marked(alice.page, 'hi @bob and @alice'), true);
  assert.equal(await marked(bob.page, 'just @bob this time'), true);
  assert.equal(await marked(alice.page, 'just @bob this time'), false, 'alice is not named');
  assert.equal(await marked(carol.page, 'just @bob this time'), false, 'nor is the author');
  const bg = await item(bob.page, 'just @bob').evaluate((li) => getComputedStyle(li).backgroundColor);
  const plain = await item(alice.page, 'just @bob').evaluate((li) => getComputedStyle(li).backgroundColor);
  assert.notEqual(bg, plain, 'the mark shows');
});

test('on a phone a tap opens a message\'s actions; the reaction reaches the others', async () => {
  await alice.page.locator('#composer-text').fill('tap me, carol');
  await alice.page.locator('#composer-text').press('Enter');
  const { page } = carol;
  await waitMessage(page, 'tap me, carol');
  await item(page, 'tap me, carol').locator('.msg-text').tap();
  const bar = page.locator('.msg-actions');
  await bar.getByRole('button', { name: 'Add a reaction' }).tap();
  await screenshot(page, 'phone-react-dark');
  await page.getByRole('button', { name: 'React with party' }).tap();
  const chip = item(alice.page, 'tap me, carol').locator('.reaction');
  await until(async () => (await chip.textContent()) === '🎉 1' && (await chip.getAttribute('title')) === 'carol', 'carol\'s party on alice\'s page');
  await until(async () => (await item(bob.page, 'tap me, carol').locator('.reaction').getAttribute('title')) === 'carol', 'and on bob\'s');
  // A long press (the context menu a phone opens for it) shows the toolbar on its message instead.
  const other = item(page, 'just @bob this time');
  const prevented = await other.locator('.msg-text').evaluate((el) => !el.dispatchEvent(new PointerEvent('contextmenu', { pointerType: 'touch', bubbles: true, cancelable: true })));
  assert.ok(prevented, 'no browser menu');
  await other.locator('.msg-actions').getByRole('button', { name: 'Reply' }).waitFor();
  // The message carol reacted to keeps the keyboard focus; bob's reaction draws it again, and the
  // focus goes back to it without taking the toolbar from the message the long press chose.
  await item(bob.page, 'tap me, carol').locator('.reaction').click();
  await until(async () => (await item(page, 'tap me, carol').locator('.reaction').textContent()) === '🎉 2', 'bob\'s party on carol\'s phone');
  assert.equal(await other.locator('.msg-actions').count(), 1, 'the toolbar stayed on the long-pressed message');
  assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], []);
});

test('all of it on one page (the README\'s screenshot): a mention, reactions, an edit, a reply, the picker', async () => {
  const { page } = alice;
  await bob.page.locator('#composer-text').fill('Release notes are up, @alice: can you read them?');
  await bob.page.locator('#composer-text').press('Enter');
  const ask = item(page, 'Release notes are up');
  await ask.waitFor();
  await ask.hover();
  await page.locator('.msg-actions').getByRole('button', { name: 'Reply' }).click();
  await page.locator('#composer-text').fill('On it, **after lunch**');
  await page.locator('#composer-text').press('Enter');
  const answer = item(page, 'On it');
  await answer.waitFor();
  await answer.hover();
  await page.locator('.msg-actions').getByRole('button', { name: 'Edit' }).click();
  await page.getByRole('textbox', { name: 'Edit your message' }).fill('On it, **right now**');
  await page.getByRole('textbox', { name: 'Edit your message' }).press('Enter');
  await item(bob.page, 'On it, right now').locator('.edited').waitFor();
  for (const [p, name] of [[bob.page, 'thanks'], [carol.page, 'party'], [carol.page, 'thanks']]) {
    const li = item(p, 'On it, right now');
    await li.waitFor();
    await li.locator('.msg-text').click();
    await p.locator('.msg-actions').getByRole('button', { name: 'Add a reaction' }).click();
    await p.getByRole('button', { name: `React with ${name}` }).click();
  }
  await until(async () => (await item(page, 'On it, right now').locator('.reaction').allTextContents()).join() === '🙏 2,🎉 1', 'three reactions on alice\'s page');
  await bob.page.locator('#composer-text').fill('/me ships the release');
  await bob.page.locator('#composer-text').press('Enter');
  const last = item(page, 'ships the release');
  await last.waitFor();
  await last.hover();
  await page.locator('.msg-actions').getByRole('button', { name: 'Reply' }).click();
  await ask.hover();
  await page.locator('.msg-actions').getByRole('button', { name: 'Add a reaction' }).click();
  assert.ok(await ask.evaluate((li) => li.classList.contains('mention')));
  assert.equal(await page.locator('#reply-text').textContent(), 'Replying to * bob ships the release');
  await page.locator('#composer-text').pressSequentially('@c');
  assert.deepEqual(await options(page), ['@carol*']);
  await screenshot(page, 'timeline-actions');
});
