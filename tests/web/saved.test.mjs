// Saved rooms and read markers on the web page (protocol 1.1 rules 66-68): a registered user's
// rooms come back on every device from `welcome`, a leave on one device takes the room from the
// others, unread and mention counts agree across devices (`read`), a "New messages" line marks
// where reading stopped, and a guest cannot create a room. alice has a desktop and a phone in the
// dark theme; bob is a plain client that writes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { launch, person, screenshot, signIn, until, waitMessage } from './lib/browser.mjs';
import { seedClient } from './lib/seed.mjs';

const PASSWORD = 'alice-password-1';
let server;
let browser;
let desk;
let phone;
let bob;

const PHONE = { viewport: { width: 390, height: 740 }, colorScheme: 'dark', touch: true };
const myRooms = (page) => page.locator('#my-rooms .conv-name').allTextContents();
const badge = (page, room) => page.locator(`#my-rooms [data-conv="${room}"] .badge`);

before(async () => {
  server = await startChatServer();
  browser = await launch();
  desk = await person(browser, server);
  await signIn(desk.page, 'alice', 'register', PASSWORD);
  await desk.page.locator('#join-name').fill('dev');
  await desk.page.locator('#join-name').press('Enter');
  await until(async () => (await myRooms(desk.page)).includes('#dev'), 'dev in alice\'s rooms');
  await desk.page.locator('#my-rooms [data-conv="general"]').click();
  bob = await seedClient(server, 'bob');
  await bob.request({ type: 'join', room: 'dev' });
});

after(async () => {
  bob?.close();
  await browser?.close();
  await server?.dispose();
});

test('a new device joins the saved rooms from welcome', async () => {
  phone = await person(browser, server, PHONE);
  await signIn(phone.page, 'alice', 'login', PASSWORD);
  await until(async () => (await myRooms(phone.page)).join() === '#dev,#general', 'both saved rooms on the phone');
  assert.equal(await phone.page.locator('#conv-title').textContent(), '#general');
});

test('unread and mention counts: from welcome, live, and cleared on every device by reading', async () => {
  await bob.send('dev', 'first unread');
  await bob.send('dev', 'second, for @alice');
  for (const p of [desk, phone]) {
    await until(async () => (await badge(p.page, 'dev').textContent()) === '@2', 'a live badge of 2 with a mention');
    assert.equal(await badge(p.page, 'dev').getAttribute('aria-label'), '2 unread, 1 mentioning you');
  }
  // A reload counts from the server's marker: the replay of the same two adds nothing.
  const frames = []; // what the phone's connection receives from now on
  phone.page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(JSON.parse(f.payload))));
  await phone.page.reload();
  await until(async () => (await badge(phone.page, 'dev').count()) === 1, 'badge after reload');
  await until(async () => (await badge(phone.page, 'dev').textContent()) === '@2', 'welcome counts, not doubled by the replay');
  // Reading on the desktop: a line above the first unread message there, no badge anywhere.
  await desk.page.locator('#my-rooms [data-conv="dev"]').click();
  await waitMessage(desk.page, 'second, for @alice');
  const line = desk.page.locator('#messages li.new-line');
  await line.waitFor();
  const next = await line.evaluate((li) => li.nextElementSibling.querySelector('.msg-text')?.textContent);
  assert.equal(next, 'first unread', 'the line is right before the first unread message');
  await screenshot(desk.page, 'new-messages-line');
  await until(async () => (await badge(phone.page, 'dev').count()) === 0, 'the phone\'s badge cleared by the desktop\'s read');
  assert.equal(await badge(desk.page, 'dev').count(), 0);
  // While the room is open and seen, new messages are read at once.
  const { seq } = await bob.send('dev', 'third, read at once');
  await waitMessage(desk.page, 'third, read at once');
  await until(() => frames.some((m) => m.type === 'read' && m.id === undefined && m.room === 'dev' && m.seq === seq), 'the desktop\'s read reaching the phone');
  await until(async () => (await badge(phone.page, 'dev').count()) === 0, 'no badge on the phone');
  assert.equal(await phone.page.title(), 'parley');
  const fresh = await person(browser, server);
  await signIn(fresh.page, 'alice', 'login', PASSWORD);
  await until(async () => (await myRooms(fresh.page)).includes('#dev'), 'dev on a third device');
  assert.equal(await badge(fresh.page, 'dev').count(), 0, 'the server\'s marker says all is read');
  await fresh.context.close();
});

test('leaving on one device takes the room from the others', async () => {
  await phone.page.locator('#nav-toggle').click();
  await phone.page.locator('#my-rooms [data-conv="dev"]').click();
  await until(async () => (await phone.page.locator('#conv-title').textContent()) === '#dev', 'dev open on the phone');
  await desk.page.locator('#leave').click();
  await until(async () => (await myRooms(phone.page)).join() === '#general', 'dev gone from the phone');
  assert.equal(await phone.page.locator('#conv-title').textContent(), '#general', 'the phone moved to a room it is in');
  await phone.page.reload();
  await until(async () => (await myRooms(phone.page)).join() === '#general', 'and still gone after a reload');
  assert.deepEqual(desk.errors, []);
  assert.deepEqual(phone.errors, []);
});

test('a guest cannot create a room, and is told so', async () => {
  const carol = await person(browser, server);
  await signIn(carol.page, 'carol');
  const label = carol.page.locator('#join-form label');
  assert.equal(await label.textContent(), 'Join a room');
  await carol.page.locator('#join-name').fill('nowhere');
  await carol.page.locator('#join-name').press('Enter');
  await until(async () => /no room by that name/.test(await carol.page.locator('#join-error').textContent()), 'the reason under the field');
  assert.ok(!(await myRooms(carol.page)).includes('#nowhere'));
  assert.equal(await desk.page.locator('#join-form label').textContent(), 'Join or create a room');
  await carol.context.close();
});
