// Rich text, done safely, between two people in the dark theme: links (http and https only,
// opened apart from the page), inline code and fenced code blocks, bold and italic, dir="auto" on
// every message, nothing the sender writes becoming HTML; and "/me" actions.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { launch, person, say, screenshot, signIn, waitMessage } from './lib/browser.mjs';

let server;
let browser;
let alice;
let bob;

before(async () => {
  server = await startChatServer();
  browser = await launch();
  alice = await person(browser, server, { colorScheme: 'dark' });
  bob = await person(browser, server, { colorScheme: 'dark' });
  await signIn(alice.page, 'alice');
  await signIn(bob.page, 'bob');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const TEXT = 'see https://example.org/a?b=1&c=(2). and HTTP://example.net, not javascript:alert(1) '
  + 'nor ftp://example.com/x; **bold** and *slanted* and 2*3*4 and `a <b> c` <img src=x onerror=alert(1)>';

test('links, code, bold and italic as elements; everything else as text', async () => {
  await say(bob.page, TEXT);
  const { page } = alice;
  const msg = page.locator('#messages .msg-text', { hasText: 'see ' }).last();
  await msg.waitFor();
  const links = await msg.locator('a').evaluateAll((as) => as.map((a) => ({
    href: a.getAttribute('href'), text: a.textContent, rel: a.rel, target: a.target,
  })));
  assert.deepEqual(links, [
    { href: 'https://example.org/a?b=1&c=(2)', text: 'https://example.org/a?b=1&c=(2)', rel: 'noopener noreferrer', target: '_blank' },
    { href: 'http://example.net/', text: 'HTTP://example.net', rel: 'noopener noreferrer', target: '_blank' },
  ]);
  assert.deepEqual(await msg.locator('strong').allTextContents(), ['bold']);
  assert.deepEqual(await msg.locator('em').allTextContents(), ['slanted']);
  assert.deepEqual(await msg.locator('code').allTextContents(), ['a <b> c']);
  assert.equal(await msg.locator('img, b, script').count(), 0);
  assert.match(await msg.textContent(), /2\*3\*4/);
  assert.match(await msg.textContent(), /<img src=x onerror=alert\(1\)>/);
  const font = await msg.locator('code').evaluate((el) => getComputedStyle(el).fontFamily);
  assert.match(font, /mono/i);
});

test('a fenced code block keeps its lines, in monospace', async () => {
  const block = 'before\n```js\nconst x = 1;\n  if (x) **not bold**\n```\nafter';
  await say(bob.page, block);
  const { page } = alice;
  const pre = page.locator('#messages pre.code').last();
  await pre.waitFor();
  assert.equal(await pre.textContent(), 'const x = 1;\n  if (x) **not bold**');
  assert.equal(await pre.locator('strong').count(), 0);
  // The line breaks around the block are its edges: "before", the block, "after", no blank lines.
  const msg = pre.locator('..');
  assert.equal(await msg.evaluate((el) => [...el.childNodes].map((n) => n.textContent).join('|')),
    'before|const x = 1;\n  if (x) **not bold**|after');
  assert.match(await pre.evaluate((el) => getComputedStyle(el).fontFamily), /mono/i);
});

test('dir="auto" on every message: right-to-left text reads correctly', async () => {
  await say(bob.page, 'שלום עולם');
  await waitMessage(alice.page, 'שלום עולם');
  const dirs = await alice.page.locator('#messages .msg-text').evaluateAll((els) => els.map((e) => e.getAttribute('dir')));
  assert.ok(dirs.length >= 3);
  assert.ok(dirs.every((d) => d === 'auto'), JSON.stringify(dirs));
  const rtl = alice.page.locator('#messages .msg-text', { hasText: 'שלום' });
  assert.equal(await rtl.evaluate((el) => getComputedStyle(el).direction), 'rtl');
});

test('/me TEXT is an action: "* alice waves", in italics, for both', async () => {
  await say(alice.page, '/me waves at *everyone*');
  for (const p of [alice, bob]) {
    const action = p.page.locator('#messages .msg-text.action').last();
    await action.waitFor();
    assert.equal(await action.textContent(), '* alice waves at everyone');
    assert.equal(await action.evaluate((el) => getComputedStyle(el).fontStyle), 'italic');
  }
  // Only "/me " at the start makes an action.
  await say(alice.page, '/meow and /me later');
  await waitMessage(bob.page, '/meow and /me later');
  assert.equal(await bob.page.locator('#messages .msg-text.action').count(), 1);
  await screenshot(bob.page, 'rich-text-dark');
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});
