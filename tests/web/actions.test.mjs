// The message actions on the web page (protocol 1.1's timeline): edit, delete, react and reply
// through the toolbar each message shows, by mouse, keyboard and touch, with what the others see:
// bob edits and alice's page shows the new text and "(edited)"; reaction chips that toggle your
// own and name who gave them; a reply's quote that finds its message in older history.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { launch, person, say, screenshot, signIn, texts, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;
let alice;
let bob;
const tag = process.pid % 10000;

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
  browser = await launch();
  alice = await person(browser, server);
  bob = await person(browser, server, { colorScheme: 'dark' });
  await signIn(alice.page, 'alice');
  await signIn(bob.page, 'bob');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const item = (page, text) => page.locator('#messages li.msg', { has: page.locator('.msg-text', { hasText: text }) });
const bar = (page) => page.locator('.msg-actions');
const chips = (li) => li.locator('.reaction').evaluateAll((bs) => bs.map((b) => `${b.textContent}|${b.title}|${b.getAttribute('aria-pressed')}`));

test('bob edits and deletes his message from its toolbar; alice sees the new text, "(edited)", then "message deleted"', async () => {
  await say(bob.page, `first draft ${tag}`);
  await waitMessage(alice.page, `first draft ${tag}`);
  const mine = item(bob.page, `first draft ${tag}`);
  await mine.hover();
  assert.deepEqual(await bar(bob.page).getByRole('button').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label') || b.textContent)),
    ['Add a reaction', 'Reply', 'Edit', 'Delete'], 'the author has all four');
  await bar(bob.page).getByRole('button', { name: 'Edit' }).click();
  const box = bob.page.getByRole('textbox', { name: 'Edit your message' });
  assert.equal(await box.inputValue(), `first draft ${tag}`);
  await box.fill(`second thought ${tag}`);
  await box.press('Enter');
  const theirs = item(alice.page, `second thought ${tag}`);
  await theirs.locator('.edited', { hasText: '(edited)' }).waitFor();
  await item(bob.page, `second thought ${tag}`).locator('.edited').waitFor();
  assert.equal(await bob.page.locator('.edit-box').count(), 0, 'the editor closed');

  // Alice's toolbar on bob's message has no Edit or Delete.
  await theirs.hover();
  assert.deepEqual(await bar(alice.page).getByRole('button').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label') || b.textContent)),
    ['Add a reaction', 'Reply']);

  // Delete asks first: Cancel keeps the message, Delete removes it for everyone.
  const now = item(bob.page, `second thought ${tag}`);
  await now.hover();
  await bar(bob.page).getByRole('button', { name: 'Delete' }).click();
  const confirm = bob.page.getByRole('group', { name: 'Delete this message?' });
  assert.equal(await bob.page.evaluate(() => document.activeElement.textContent), 'Cancel', 'the safe answer has the focus');
  assert.equal(await bar(bob.page).count(), 0, 'no toolbar while it asks');
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await confirm.count(), 0);
  await now.hover();
  await bar(bob.page).getByRole('button', { name: 'Delete' }).click();
  await confirm.getByRole('button', { name: 'Delete', exact: true }).click();
  await until(async () => !(await texts(alice.page)).includes(`second thought ${tag}`), 'the text gone from alice\'s page');
  assert.ok((await texts(alice.page)).includes('message deleted'));
  assert.ok(!(await alice.page.locator('#messages').innerHTML()).includes(`second thought ${tag}`));
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('up arrow in the empty box edits your last message; Escape cancels, Enter saves', async () => {
  await say(bob.page, `older ${tag}`);
  await say(bob.page, `newest ${tag}`);
  await waitMessage(alice.page, `newest ${tag}`);
  const composer = bob.page.locator('#composer-text');
  await composer.press('ArrowUp');
  const box = bob.page.getByRole('textbox', { name: 'Edit your message' });
  assert.equal(await box.inputValue(), `newest ${tag}`, 'the last message, not an older one');
  await box.press('Escape');
  assert.equal(await box.count(), 0, 'Escape closes the editor');
  assert.ok((await texts(bob.page)).includes(`newest ${tag}`), 'unchanged');
  await composer.focus();
  await composer.press('ArrowUp');
  await box.fill(`newest, fixed ${tag}`);
  await box.press('Enter');
  await item(alice.page, `newest, fixed ${tag}`).locator('.edited').waitFor();
  // With text in the box, the up arrow moves the caret as usual.
  await composer.fill('line one\nline two');
  await composer.press('ArrowUp');
  assert.equal(await bob.page.locator('.edit-box').count(), 0);
  await composer.fill('');
});

test('reactions: the picker, chips naming who reacted, a chip press toggles your own', async () => {
  await say(bob.page, `react here ${tag}`);
  const onAlice = item(alice.page, `react here ${tag}`);
  await onAlice.waitFor();
  await onAlice.hover();
  await bar(alice.page).getByRole('button', { name: 'Add a reaction' }).click();
  const picker = alice.page.getByRole('group', { name: 'Pick a reaction' });
  assert.equal(await picker.getByRole('button').count(), 8);
  await picker.getByRole('button', { name: 'React with heart' }).click();
  const onBob = item(bob.page, `react here ${tag}`);
  await until(async () => (await chips(onBob)).join() === '❤️ 1|alice|false', 'alice\'s heart on bob\'s page');
  await onBob.locator('.reaction').click();
  await until(async () => (await chips(onAlice)).join() === '❤️ 2|alice, bob|true', 'two hearts on alice\'s page');
  await onAlice.locator('.reaction').click();
  await until(async () => (await chips(onBob)).join() === '❤️ 1|bob|true', 'alice took hers back');
  await until(async () => (await chips(onAlice)).join() === '❤️ 1|bob|false', 'and her page says so');
});

test('the keyboard reaches the toolbar: arrows in the log, Tab, Enter, Escape', async () => {
  await say(bob.page, `before the keys ${tag}`);
  await say(bob.page, `keyboard ${tag}`);
  const { page } = alice;
  await waitMessage(page, `keyboard ${tag}`);
  await page.locator('#log').focus();
  await page.keyboard.press('ArrowUp');
  const focused = () => page.evaluate(() => document.activeElement.closest('li.msg')?.querySelector('.msg-text')?.textContent);
  assert.equal(await focused(), `keyboard ${tag}`, 'the last message');
  await page.keyboard.press('ArrowUp');
  assert.notEqual(await focused(), `keyboard ${tag}`, 'the one before');
  await page.keyboard.press('ArrowDown');
  assert.equal(await focused(), `keyboard ${tag}`);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Add a reaction');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'React with thumbs up');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  await until(async () => (await chips(item(bob.page, `keyboard ${tag}`))).join() === '❤️ 1|alice|false', 'the heart, picked by keyboard');
  await until(async () => (await chips(item(page, `keyboard ${tag}`))).join() === '❤️ 1|alice|true', 'and on alice\'s page');
  assert.equal(await focused(), `keyboard ${tag}`, 'the message keeps the focus as it is drawn again');
  const label = () => page.evaluate(() => document.activeElement.getAttribute('aria-label') || document.activeElement.textContent);
  await page.keyboard.press('Tab');
  assert.equal(await label(), '❤️ 1: alice. Take back your reaction', 'the chip first');
  await page.keyboard.press('Tab');
  assert.equal(await label(), 'Add a reaction');
  await page.keyboard.press('Tab');
  assert.equal(await label(), 'Reply');
  await page.keyboard.press('Escape');
  assert.equal(await focused(), `keyboard ${tag}`, 'Escape goes back to the message');
});

test('a reply: the bar over the box, cancel, the quote others see', async () => {
  await say(bob.page, `question ${tag}?`);
  const { page } = alice;
  const q = item(page, `question ${tag}?`);
  await q.waitFor();
  await q.hover();
  await bar(page).getByRole('button', { name: 'Reply' }).click();
  const replyBar = page.locator('#reply-bar');
  assert.equal(await replyBar.locator('#reply-text').textContent(), `Replying to bob: question ${tag}?`);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-text');
  await page.getByRole('button', { name: 'Cancel the reply' }).click();
  assert.ok(await replyBar.isHidden());
  await q.hover();
  await bar(page).getByRole('button', { name: 'Reply' }).click();
  await say(page, `answer ${tag}`);
  assert.ok(await replyBar.isHidden(), 'the bar goes once the reply is sent');
  const onBob = item(bob.page, `answer ${tag}`);
  await onBob.waitFor();
  assert.equal(await onBob.locator('.quote').textContent(), `↪ bob: question ${tag}?`);
  await screenshot(bob.page, 'message-actions-dark');
  // The quote follows its message: bob edits the question, alice's quote changes.
  await item(bob.page, `question ${tag}?`).hover();
  await bar(bob.page).getByRole('button', { name: 'Edit' }).click();
  await bob.page.getByRole('textbox', { name: 'Edit your message' }).fill(`question, clearer ${tag}?`);
  await bob.page.getByRole('textbox', { name: 'Edit your message' }).press('Enter');
  await until(async () => (await item(page, `answer ${tag}`).locator('.quote').textContent()) === `↪ bob: question, clearer ${tag}?`, 'the quote edited');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('a quote of a message not loaded yet loads older history, then shows and marks it', async () => {
  const seed = await seedClient(server, `archivist${tag}`);
  await seed.request({ type: 'join', room: 'deep' });
  const original = await seed.send('deep', `the original ${tag}`);
  for (let i = 1; i <= 130; i++) await seed.send('deep', `filler ${i}`);
  const reply = await seed.request({ type: 'send', room: 'deep', text: `replying to the start ${tag}`, reply_to: original.seq });
  assert.equal(reply.type, 'ack');
  seed.close();
  const { page } = alice;
  await page.locator('#join-name').fill('deep');
  await page.locator('#join-name').press('Enter');
  await waitMessage(page, `replying to the start ${tag}`);
  assert.ok(!(await texts(page)).includes(`the original ${tag}`), 'not loaded at first');
  const quote = item(page, `replying to the start ${tag}`).locator('.quote');
  assert.equal(await quote.textContent(), '↪ an earlier message');
  await quote.click();
  const target = item(page, `the original ${tag}`);
  await target.and(page.locator('.target')).waitFor();
  const inView = await target.evaluate((li) => {
    const r = li.getBoundingClientRect();
    const log = document.getElementById('log').getBoundingClientRect();
    return r.top >= log.top && r.bottom <= log.bottom;
  });
  assert.ok(inView, 'scrolled into view');
  assert.equal(await page.evaluate(() => document.activeElement.querySelector('.msg-text')?.textContent), `the original ${tag}`);
  assert.equal(await quote.textContent(), `↪ archivist${tag}: the original ${tag}`, 'the quote, now that its message is here');
  assert.deepEqual(alice.errors, []);
});

test('in a direct message too: an edit and a reaction', async () => {
  await alice.page.locator('#my-rooms button', { hasText: '#general' }).click();
  await alice.page.locator('#members button.member-name', { hasText: 'bob' }).click();
  await say(alice.page, `psst ${tag}`);
  await bob.page.locator('#dm-list button', { hasText: 'alice' }).click();
  await waitMessage(bob.page, `psst ${tag}`);
  await alice.page.locator('#composer-text').press('ArrowUp');
  await alice.page.getByRole('textbox', { name: 'Edit your message' }).fill(`psst, edited ${tag}`);
  await alice.page.getByRole('textbox', { name: 'Edit your message' }).press('Enter');
  const onBob = item(bob.page, `psst, edited ${tag}`);
  await onBob.locator('.edited').waitFor();
  await onBob.hover();
  await bar(bob.page).getByRole('button', { name: 'Add a reaction' }).click();
  await bob.page.getByRole('button', { name: 'React with eyes' }).click();
  await until(async () => (await chips(item(alice.page, `psst, edited ${tag}`))).join() === '👀 1|bob|false', 'bob\'s eyes on alice\'s page');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('a reply on the wire carries reply_to, and shows its quote while it waits for its ack', async (t) => {
  let held = null;
  let release;
  const released = new Promise((r) => { release = r; });
  const p = await person(browser, server, {
    beforeLoad: (page) => page.routeWebSocket(/\/ws$/, (ws) => {
      const upstream = ws.connectToServer();
      upstream.onMessage((m) => ws.send(m));
      ws.onMessage((m) => {
        const msg = JSON.parse(m);
        if (msg.type !== 'send' || msg.reply_to === undefined || held) return upstream.send(m);
        held = msg; // the reply waits here until the test has looked at the page
        released.then(() => upstream.send(m));
      });
    }),
  });
  t.after(() => p.context.close());
  await signIn(p.page, `gina${tag}`);
  await bob.page.locator('#my-rooms button', { hasText: '#general' }).click();
  await bob.page.locator('#conv-title', { hasText: '#general' }).waitFor();
  await say(bob.page, `to be answered ${tag}`);
  const target = item(p.page, `to be answered ${tag}`);
  await target.waitFor();
  await target.hover();
  await bar(p.page).getByRole('button', { name: 'Reply' }).click();
  await say(p.page, `held answer ${tag}`);
  await until(() => held, 'the reply on its way');
  const seq = await target.getAttribute('data-seq');
  assert.equal(held.reply_to, Number(seq));
  const waiting = p.page.locator('#pending .msg', { hasText: `held answer ${tag}` });
  assert.equal(await waiting.locator('.quote').textContent(), `↪ bob: to be answered ${tag}`);
  release();
  await until(async () => (await p.page.locator('#pending .msg').count()) === 0, 'acked');
  await until(async () => (await item(bob.page, `held answer ${tag}`).locator('.quote').textContent().catch(() => null)) === `↪ bob: to be answered ${tag}`, 'bob sees the quote');
  assert.deepEqual(p.errors, []);
});

test('forbidden: a guest name taken again by a new session is not the author of the old messages', async (t) => {
  const p = await person(browser, server);
  t.after(() => p.context.close());
  const name = `frank${tag}`;
  await signIn(p.page, name);
  await say(p.page, `said by the first ${name}`);
  await waitMessage(p.page, `said by the first ${name}`);
  await p.page.getByRole('button', { name: 'Sign out' }).click();
  await signIn(p.page, name);
  await waitMessage(p.page, `said by the first ${name}`);
  await p.page.locator('#composer-text').press('ArrowUp');
  const box = p.page.getByRole('textbox', { name: 'Edit your message' });
  await box.fill('not mine to change');
  await box.press('Enter');
  await p.page.locator('.editor .error', { hasText: 'Only the author can change this message.' }).waitFor();
  await box.press('Escape');
  assert.ok((await texts(p.page)).includes(`said by the first ${name}`));
  assert.deepEqual(p.errors, []);
});

test('edit_window: a refused edit says why in the editor and keeps the text', async (t) => {
  const strict = await startChatServer(['--edit-window', '1']);
  t.after(() => strict.dispose());
  const p = await person(browser, strict);
  t.after(() => p.context.close());
  await signIn(p.page, 'erin');
  await say(p.page, `too late ${tag}`);
  const li = item(p.page, `too late ${tag}`);
  await li.waitFor();
  // The window is one second: the edit must come after it (the condition under test, not a wait for an event).
  await new Promise((r) => setTimeout(r, 1500));
  await li.hover();
  await bar(p.page).getByRole('button', { name: 'Edit' }).click();
  const box = p.page.getByRole('textbox', { name: 'Edit your message' });
  await box.fill(`changed ${tag}`);
  await box.press('Enter');
  await p.page.locator('.editor .error', { hasText: 'This message is too old to edit now.' }).waitFor();
  assert.equal(await box.inputValue(), `changed ${tag}`, 'what was typed stays');
  await box.press('Escape');
  assert.ok((await texts(p.page)).includes(`too late ${tag}`));
  assert.deepEqual(p.errors, []);
});
