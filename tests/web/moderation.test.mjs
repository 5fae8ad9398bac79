// Moderation on the web page (protocol 1.1 rules 53, 59-65): alice owns #mods; bob (registered,
// on a phone in the dark theme) becomes an op from her member menu; mallory is a guest who gets
// muted, has a message deleted by bob, then is kicked and banned. Each step is checked on the
// page of the person it happens to; every topic and moderation event is a line of the
// conversation, live and after a reload.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startAdminServer } from '../chat/lib/mod.mjs';
import { launch, online, person, say, screenshot, signIn, texts, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;
let alice;
let bob;
let mallory;

async function openRoom(p, name) {
  await p.page.locator('#join-name').fill(name);
  await p.page.locator('#join-name').press('Enter');
  await until(async () => (await p.page.locator('#conv-title').textContent()) === '#' + name, `#${name} open`);
}
const menu = (page, user) => page.getByRole('combobox', { name: `Moderate ${user}` });
const item = (page, text) => page.locator('#messages li.msg', { has: page.locator('.msg-text', { hasText: text }) });
const myRooms = (page) => page.locator('#my-rooms .conv-name').allTextContents();
// The conversation as shown: message texts and event lines, in order.
const timeline = (page) => page.locator('#messages .msg-text, #messages .sys-text').allTextContents();
const lastLine = async (page) => (await page.locator('#messages .sys-text').allTextContents()).at(-1);

before(async () => {
  server = await startAdminServer(); // the admin makes an owner in the last test
  browser = await launch();
  alice = await person(browser, server);
  await signIn(alice.page, 'alice', 'register', 'alice-password-1');
  await openRoom(alice, 'mods');
  bob = await person(browser, server, { viewport: { width: 390, height: 740 }, colorScheme: 'dark', touch: true });
  await signIn(bob.page, 'bob', 'register', 'bob-password-1');
  await bob.page.locator('#nav-toggle').click();
  await openRoom(bob, 'mods');
  mallory = await person(browser, server);
  await signIn(mallory.page, 'mallory');
  await openRoom(mallory, 'mods');
  await say(mallory.page, 'buy cheap watches');
  await waitMessage(bob.page, 'buy cheap watches');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('the owner makes bob an op from his menu; members have no menu', async () => {
  assert.equal(await bob.page.locator('#members select.mod').count(), 0, 'a member sees no moderation menu');
  assert.equal(await mallory.page.locator('#members select.mod').count(), 0);
  await menu(alice.page, 'bob').selectOption('Make op');
  await bob.page.locator('#members-toggle').click();
  await menu(bob.page, 'mallory').waitFor();
  const options = await menu(bob.page, 'mallory').locator('option').allTextContents();
  assert.ok(options.includes('Kick') && options.includes('Mute 10 min'), options.join());
  assert.ok(!options.includes('Make op'), 'an op cannot give roles');
  await screenshot(bob.page, 'phone-moderation-dark');
});

test('an op mutes mallory (her composer says so) and deletes her message', async () => {
  await menu(bob.page, 'mallory').selectOption('Mute 10 min');
  await bob.page.keyboard.press('Escape'); // the member list closes
  const box = mallory.page.locator('#composer-text');
  await until(() => box.isDisabled(), 'mallory\'s composer disabled');
  assert.equal(await box.getAttribute('placeholder'), 'You are muted in #mods');
  const msg = item(bob.page, 'buy cheap watches');
  await msg.click();
  await bob.page.locator('.msg-actions').getByRole('button', { name: 'Delete' }).click();
  await bob.page.getByRole('group', { name: 'Delete this message?' }).getByRole('button', { name: 'Delete', exact: true }).click();
  await until(async () => (await texts(alice.page)).includes('message deleted'), 'deleted on alice\'s page');
  assert.ok(!(await texts(mallory.page)).includes('buy cheap watches'), 'and on mallory\'s');
  await bob.page.locator('#members-toggle').click();
  await menu(bob.page, 'mallory').selectOption('Unmute');
  await bob.page.keyboard.press('Escape');
  await until(async () => !(await box.isDisabled()), 'mallory\'s composer enabled again');
  assert.equal(await box.getAttribute('placeholder'), 'Message #mods');
});

test('a kick with a reason, then a ban: mallory is told who and why, and cannot come back', async () => {
  alice.answer = 'spam';
  await menu(alice.page, 'mallory').selectOption('Kick');
  await until(async () => !(await myRooms(mallory.page)).includes('#mods'), '#mods gone from mallory\'s rooms');
  const notice = mallory.page.locator('#notice');
  await until(async () => (await notice.textContent()) === 'You were removed from #mods by alice: spam.', 'the kick notice');
  assert.deepEqual(alice.dialogs, ['Kick mallory: reason?']);
  await openRoom(mallory, 'mods'); // a kick is not a ban
  alice.answer = '';
  await menu(alice.page, 'mallory').selectOption('Ban 1 hour');
  await until(async () => /^You were banned from #mods by alice\.$/.test(await notice.textContent()), 'the ban notice');
  await mallory.page.locator('#join-name').fill('mods');
  await mallory.page.locator('#join-name').press('Enter');
  await until(async () => /banned/i.test(await mallory.page.locator('#join-error').textContent()), 'the refusal under the room field');
  // Still listed (offline) on alice's page, the ban is lifted from the same menu: once its line
  // shows, the event is stored and mallory's join is let in.
  await menu(alice.page, 'mallory').selectOption('Unban');
  await until(async () => (await lastLine(alice.page)) === 'alice unbanned mallory', 'the unban line');
  await openRoom(mallory, 'mods');
  for (const p of [alice, bob, mallory]) assert.deepEqual(p.errors, []);
});

test('an admin makes bob the owner from his menu; alice, the owner before, becomes an op', async () => {
  assert.ok(!(await menu(alice.page, 'bob').locator('option').allTextContents()).includes('Make owner'), 'only admins make owners');
  const admin = await person(browser, server);
  await signIn(admin.page, server.admin, 'login', 'correct-horse-9');
  await openRoom(admin, 'mods');
  await menu(admin.page, 'bob').selectOption('Make owner');
  // bob, owner now, may give roles; alice, an op now, no longer may.
  await bob.page.locator('#members-toggle').click();
  await until(async () => (await menu(bob.page, 'alice').locator('option').allTextContents()).includes('Remove op'), 'bob\'s menu for alice offers Remove op');
  await until(async () => !(await menu(alice.page, 'mallory').locator('option').allTextContents()).includes('Make op'), 'alice\'s menu without roles');
  assert.deepEqual(admin.errors, []);
});

// Set with HTML and right-to-left text in it: shown as text, in its own direction.
const TOPIC = 'Release <b>Friday</b> שלום';

test('topic and moderation events are lines among the messages, live, and not unread messages', async () => {
  // bob reads #general on his phone while alice sets the topic, writes, and clears it in #mods.
  await bob.page.keyboard.press('Escape'); // the member list closes
  await bob.page.locator('#nav-toggle').click();
  await bob.page.locator('#my-rooms [data-conv="general"]').click();
  await until(async () => (await bob.page.locator('#conv-title').textContent()) === '#general', '#general open');
  await alice.page.locator('#topic-edit').click();
  await alice.page.locator('#topic-text').fill(TOPIC);
  await alice.page.locator('#topic-text').press('Enter');
  await say(alice.page, 'release notes are up');
  await alice.page.locator('#topic-edit').click();
  await alice.page.locator('#topic-text').fill('');
  await alice.page.locator('#topic-text').press('Enter');
  await until(async () => (await lastLine(alice.page)) === 'alice cleared the topic', 'the cleared topic line');
  const badge = bob.page.locator('#my-rooms [data-conv="mods"] .badge');
  await until(async () => (await badge.textContent()) === '1', 'one unread message in #mods, the lines not counted');
  await bob.page.locator('#nav-toggle').click();
  await bob.page.locator('#my-rooms [data-conv="mods"]').click();
  await waitMessage(bob.page, 'release notes are up');
  const want = ['message deleted', 'alice made bob an op', 'bob muted mallory for 10 min', 'bob unmuted mallory',
    'alice removed mallory (spam)', 'alice banned mallory for 1 h', 'alice unbanned mallory',
    `${server.admin} made bob the owner`, `alice set the topic: ${TOPIC}`, 'release notes are up', 'alice cleared the topic'];
  assert.deepEqual(await timeline(bob.page), want);
  // The new messages line is above the first new message, below the lines before it.
  const next = await bob.page.locator('#messages li.new-line').evaluate((li) => li.nextElementSibling.textContent);
  assert.match(next, /release notes are up/);
  const topic = bob.page.locator('#messages .sys-text [dir="auto"]', { hasText: 'Friday' });
  assert.equal(await topic.textContent(), TOPIC);
  assert.equal(await bob.page.locator('#messages .sys b').count(), 0, 'no HTML from the topic');
  const times = await bob.page.locator('#messages li.sys time').evaluateAll((ts) => ts.map((t) => t.dateTime && t.textContent));
  assert.equal(times.length, 9);
  assert.ok(times.every(Boolean), 'every line has its time');
  await screenshot(bob.page, 'phone-event-lines-dark');
  await screenshot(alice.page, 'event-lines');
});

test('after a reload the replay shows the same lines among the messages', async () => {
  const before = await timeline(bob.page);
  await bob.page.reload();
  await online(bob.page);
  await until(async () => (await timeline(bob.page)).join('\n') === before.join('\n'), 'the same lines, in order');
  assert.equal(await bob.page.locator('#my-rooms [data-conv="mods"] .badge').count(), 0);
  for (const p of [alice, bob, mallory]) assert.deepEqual(p.errors, []);
});
