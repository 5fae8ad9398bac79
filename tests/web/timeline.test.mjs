// The web page and protocol 1.1's timeline: another user's edit, delete and reaction, and a reply,
// show up live on the message they change, the same after a reload (history in current state),
// and every message once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { user } from '../chat/lib/chat.mjs';
import { launch, person, signIn, texts, until, waitMessage } from './lib/browser.mjs';

let server;
let browser;
let carol;
const CAROL = `carol${process.pid % 10000}`;

before(async () => {
  server = await startChatServer();
  browser = await launch();
  carol = await person(browser, server);
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const item = (page, text) => page.locator('#messages .msg', { has: page.locator('.msg-text', { hasText: text }) });

// What the page shows of the messages: each one's text, whether marked edited, its quote and its
// reactions, in order.
async function shown(page) {
  return page.locator('#messages .msg').evaluateAll((lis) => lis.map((li) => ({
    text: li.querySelector('.msg-text')?.textContent,
    edited: !!li.querySelector('.edited'),
    quote: li.querySelector('.quote')?.textContent ?? null,
    reactions: [...li.querySelectorAll('.reaction')].map((r) => `${r.textContent}|${r.title}`),
  })));
}

test('an edit, a delete, a reaction and a reply from another user show live and after a reload', async (t) => {
  const page = carol.page;
  await signIn(page, CAROL, 'guest');
  await page.locator('#conv-title', { hasText: '#general' }).waitFor();
  const dave = await user(server, t);
  await dave.join('general');
  const tag = process.pid % 10000;
  const first = await dave.say('general', `typo ${tag}`);
  const second = await dave.say('general', `react to me ${tag}`);
  const third = await dave.say('general', `secret ${tag}`);
  await waitMessage(page, `secret ${tag}`);

  await dave.expect({ type: 'edit', room: 'general', seq: first.seq, text: `fixed ${tag}` }, 'ack');
  await dave.expect({ type: 'react', room: 'general', seq: second.seq, emoji: '👍' }, 'ack');
  await dave.expect({ type: 'delete', room: 'general', seq: third.seq }, 'ack');
  await dave.say('general', `answer ${tag}`, { reply_to: second.seq });
  await waitMessage(page, `answer ${tag}`);
  await item(page, `fixed ${tag}`).locator('.edited').waitFor();
  await until(async () => (await texts(page)).includes('message deleted'), 'the deleted message marked');

  const want = [
    { text: `fixed ${tag}`, edited: true, quote: null, reactions: [] },
    { text: `react to me ${tag}`, edited: false, quote: null, reactions: [`👍 1|${dave.name}`] },
    { text: 'message deleted', edited: false, quote: null, reactions: [] },
    { text: `answer ${tag}`, edited: false, quote: `↪ ${dave.name}: react to me ${tag}`, reactions: [] },
  ];
  const mine = (list) => list.filter((m) => m.text.includes(String(tag)) || m.text === 'message deleted');
  assert.deepEqual(mine(await shown(page)), want, 'live');
  const html = await page.locator('#messages').innerHTML();
  assert.ok(!html.includes(`secret ${tag}`), 'the deleted text is gone from the page');

  await page.reload();
  await waitMessage(page, `answer ${tag}`);
  await item(page, `fixed ${tag}`).locator('.edited').waitFor();
  assert.deepEqual(mine(await shown(page)), want, 'after a reload');
  assert.deepEqual(carol.errors, [], 'console errors');
});
