// Search on the web page (protocol 1.1 rules 71, 72): the header's field, results across rooms in
// the server's order with room, author, time and the text as text, phrases and prefixes, "More
// results" while the server has more, the "only in this room" scope, errors in the panel, and a
// click that opens the room and shows the message even far back in its history.
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
  server = await startChatServer(['--rate-limit', '0', '--search-rate', '0']);
  browser = await launch();
  alice = await person(browser, server);
  bob = await person(browser, server, { viewport: { width: 390, height: 760 }, colorScheme: 'dark', touch: true });
  await signIn(alice.page, 'alice', 'register', 'password-alice');
  await signIn(bob.page, 'bob', 'register', 'password-bob');
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

// Searches from the header's field and waits for the answer.
async function search(page, q) {
  // The note is cleared first: any text in it afterwards (other than "Searching…") is this answer.
  await page.locator('#search-note').evaluate((p) => { p.textContent = ''; });
  await page.locator('#search-q').fill(q);
  await page.locator('#search-q').press('Enter');
  await until(async () => !['', 'Searching…'].includes(await page.locator('#search-note').textContent()), `the answer to ${q}`);
}

// The results shown: "room author|text".
const results = (page) => page.locator('#search-results li').evaluateAll((lis) => lis.map((li) =>
  `${li.querySelector('b').textContent} ${li.querySelector('.result-head').textContent.split(' ')[1]}|${li.querySelector('.msg-text').textContent}`));

async function join(page, room) {
  if (await page.locator('#nav-toggle').isVisible()) await page.locator('#nav-toggle').click();
  await page.locator('#join-name').fill(room);
  await page.locator('#join-name').press('Enter');
  await page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
}

test('results across rooms and a direct message, newest first, as text; "only in this room"; Escape closes', async () => {
  const word = `kiwi${tag}`;
  await say(alice.page, `${word} in general`);
  await waitMessage(bob.page, `${word} in general`);
  await join(bob.page, `fruit${tag}`);
  await say(bob.page, `<img src=x> **${word}** in fruit`);
  await waitMessage(bob.page, `<img src=x> ${word} in fruit`);
  await bob.page.locator('#nav-toggle').click();
  await bob.page.locator('#dm-name').fill('alice');
  await bob.page.locator('#dm-name').press('Enter');
  await say(bob.page, `${word} just for you`);
  await waitMessage(bob.page, `${word} just for you`);

  const { page } = alice;
  await page.locator('#composer-text').focus();
  await page.keyboard.press('Control+k');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'search-q', 'Ctrl+K reaches the field');
  await search(page, word.toUpperCase());
  assert.deepEqual(await results(page), [
    `@bob bob|${word} just for you`,
    `#fruit${tag} bob|<img src=x> ${word} in fruit`,
    `#general alice|${word} in general`,
  ]);
  assert.equal(await page.locator('#search-note').textContent(), '3 results');
  assert.equal(await page.locator('#search-panel img').count(), 0, 'the text stays text');
  assert.equal(await page.locator('#search-results strong').first().textContent(), word, 'rich text as on the timeline');
  assert.ok(await page.locator('#search-more').isHidden(), 'nothing more');
  assert.match(await page.locator('#search-results .result-head').first().textContent(), /^@bob bob · (Today|Yesterday) \d\d:\d\d( [AP]M)?$/);
  await screenshot(page, 'search-results');

  await page.getByRole('checkbox', { name: 'Only in #general' }).check();
  await until(async () => (await results(page)).length === 1, 'one room\'s result');
  assert.deepEqual(await results(page), [`#general alice|${word} in general`]);
  await page.getByRole('checkbox', { name: 'Only in #general' }).uncheck();
  await until(async () => (await results(page)).length === 3, 'all rooms again');

  await page.locator('#search-results li').first().press('Escape').catch(() => {});
  await page.locator('#search-q').press('Escape');
  assert.ok(await page.locator('#search-panel').isHidden(), 'Escape closes the panel');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-text');

  // The direct message's result opens the conversation with bob.
  await page.locator('#search-q').focus();
  await page.locator('#search-results li', { hasText: 'just for you' }).locator('.result-head').click();
  await page.locator('#conv-title', { hasText: 'bob' }).waitFor();
  await page.locator('#messages li.msg.target', { hasText: `${word} just for you` }).waitFor();
  assert.ok(await page.locator('#search-panel').isHidden());
  assert.equal(await page.locator('#search-scope').textContent(), 'Only in bob', 'the scope follows the open conversation');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('a phrase and a prefix; errors in the panel (on a phone, dark)', async () => {
  const w = `zq${tag}`;
  await bob.page.locator('#nav-toggle').click();
  await bob.page.locator('#my-rooms button', { hasText: '#general' }).click();
  await say(bob.page, `brown fox jumps ${w}`);
  await say(bob.page, `fox brown ${w}`);
  await say(bob.page, `brownie ${w}`);
  await waitMessage(bob.page, `brownie ${w}`);
  const { page } = bob;
  await search(page, `"brown fox" ${w}`);
  assert.deepEqual(await results(page), [`#general bob|brown fox jumps ${w}`]);
  await search(page, `browni* ${w}`);
  assert.deepEqual(await results(page), [`#general bob|brownie ${w}`]);
  await search(page, `brow* ${w}`);
  assert.equal((await results(page)).length, 3);
  await search(page, `brow ${w}`);
  assert.deepEqual(await results(page), []);
  assert.equal(await page.locator('#search-note').textContent(), 'No results');

  await search(page, `"brown fox ${w}`);
  assert.equal(await page.locator('#search-note.error').textContent(), 'Search for at least one word; quotes come in pairs.');
  assert.deepEqual(await results(page), []);
  await search(page, '*** ...');
  assert.equal(await page.locator('#search-note.error').textContent(), 'Search for at least one word; quotes come in pairs.');
  const box = await page.locator('#search-panel').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390, 'the panel fits the phone');
  await screenshot(page, 'search-error-phone-dark');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('"More results" pages on without repeats; a result far back in history opens its room and shows it', async () => {
  const seed = await seedClient(server, `archivist${tag}`);
  const room = `deep${tag}`;
  await seed.request({ type: 'join', room });
  await seed.send(room, `needle${tag} at the start`);
  for (let i = 1; i <= 130; i++) await seed.send(room, `filler ${i} page${tag}`);
  seed.close();

  const { page } = alice;
  await search(page, `page${tag}`);
  assert.equal((await results(page)).length, 20);
  assert.equal(await page.locator('#search-note').textContent(), '20 results so far');
  for (let n = 40; n <= 120; n += 20) {
    await page.getByRole('button', { name: 'More results' }).click();
    await until(async () => (await results(page)).length === n, `${n} results`);
  }
  await page.getByRole('button', { name: 'More results' }).click();
  await until(async () => (await results(page)).length === 130, 'all 130');
  assert.ok(await page.locator('#search-more').isHidden(), 'no more after the last page');
  assert.equal(await page.locator('#search-note').textContent(), '130 results');
  const shown = await results(page);
  assert.deepEqual(shown, Array.from({ length: 130 }, (_, i) => `#${room} archivist${tag}|filler ${130 - i} page${tag}`), 'newest first, no repeats');

  await search(page, `needle${tag}`);
  assert.deepEqual(await results(page), [`#${room} archivist${tag}|needle${tag} at the start`]);
  await page.locator('#search-results .result-head').click();
  await page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
  const target = page.locator('#messages li.msg.target', { hasText: `needle${tag} at the start` });
  await target.waitFor();
  assert.ok((await texts(page)).length > 50, 'older history loaded to reach it');
  const inView = await target.evaluate((li) => {
    const r = li.getBoundingClientRect();
    const log = document.getElementById('log').getBoundingClientRect();
    return r.top >= log.top && r.bottom <= log.bottom;
  });
  assert.ok(inView, 'scrolled into view');
  await page.locator('#my-rooms button', { hasText: `#${room}` }).waitFor();
  assert.deepEqual(alice.errors, []);
});
