// Large rooms in the page, against a server whose rooms turn large above 3 users
// (--presence-limit 3; small again below 2.7): the member count shown and kept up to date in a
// small room (presence) and in a large one (`count`), no typing indicator left over or shown in
// a large room, a cut list paged with "Show more members", the switch back to a small room with
// the whole list and live presence, and the public rooms paged with "Show more rooms".
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PASSWORD, ChatClient as ProtoClient } from '../chat/lib/chat.mjs';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { launch, person, screenshot, signIn, until } from './lib/browser.mjs';

const TAG = process.pid % 10000;
const ALICE = `alice${TAG}`;
const BOB = `bob${TAG}`;
let server;
let browser;
let alice;
let bob;
const seeds = new Map(); // name -> seed client in #general

before(async () => {
  // A tick of 300 ms instead of 5 s (the server's test-only setting), so the switches come soon.
  server = await startChatServer(['--presence-limit', '3', '--max-conns-per-ip', '0'], { env: { PARLEY_TEST_TICK_MS: '300' } });
  browser = await launch();
  alice = await person(browser, server);
  await signIn(alice.page, ALICE);
  await alice.page.locator('#conv-title', { hasText: '#general' }).waitFor();
});

after(async () => {
  for (const s of seeds.values()) s.close();
  await browser?.close();
  await server?.dispose();
});

async function arrive(...names) {
  await Promise.all(names.map(async (name) => {
    const s = await seedClient(server, name, { guest: true }); // #general exists
    await s.request({ type: 'join', room: 'general' });
    seeds.set(name, s);
  }));
}

function depart(...names) {
  for (const name of names) {
    seeds.get(name).close();
    seeds.delete(name);
  }
}

const text = (page, sel) => page.locator(sel).textContent();

async function shows(page, sel, want) {
  await until(async () => (await text(page, sel)) === want, `${sel} = ${JSON.stringify(want)}`);
}

// The names of the member list, in the order shown.
function listed(page) {
  return page.locator('#members .member').evaluateAll((els) => els.map((el) => el.dataset.user));
}

function pageErrors() {
  return [...alice.errors, ...(bob ? bob.errors : [])];
}

const byteOrder = (a, b) => {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
};

test('a small room: the count and the list follow presence, typing shows', async () => {
  const { page } = alice;
  await arrive('s1');
  await shows(page, '#members-h', 'Members (2 online)');
  await shows(page, '#conv-sub', '2 online');
  await page.locator('#members .member.online[data-user="s1"]').waitFor();
  assert.equal(await page.locator('#members-pane.large').count(), 0);
  assert.equal(await page.locator('#members-foot').isHidden(), true);
  seeds.get('s1').notify({ type: 'typing', room: 'general' });
  await page.locator('#typing', { hasText: 's1 is typing' }).waitFor();
  depart('s1');
  await page.locator('#members .member.offline[data-user="s1"]').waitFor();
  await shows(page, '#members-h', 'Members (1 online)');
});

test('the room grows large: the count from the server, the list a snapshot, no typing', async () => {
  const { page } = alice;
  await arrive('s1');
  // s1 keeps typing: shown while the room is small, gone the moment it turns large.
  const typing = setInterval(() => seeds.get('s1')?.notify({ type: 'typing', room: 'general' }), 500);
  try {
    await page.locator('#typing', { hasText: 's1 is typing' }).waitFor();
    await arrive('s2', 's3');
    await page.locator('#members-pane.large').waitFor();
    assert.equal(await text(page, '#typing'), '', 'typing indicator left over in a large room');
    await shows(page, '#members-h', 'Members (4)');
    await shows(page, '#conv-sub', '4 members');
    // The list of when it turned large: you first, then by name; those who left are gone.
    assert.deepEqual(await listed(page), [ALICE, 's1', 's2', 's3']);
    assert.equal(await page.locator('#members-foot').isVisible(), true);
    assert.equal(await page.locator('#members-more').isHidden(), true);
    // Someone arrives: the count follows at the next tick, the list (not live) does not.
    await arrive('s4');
    await shows(page, '#members-h', 'Members (5)');
    await shows(page, '#members-note', 'Showing 4 of 5. In a room this large the list is not updated live.');
    assert.deepEqual(await listed(page), [ALICE, 's1', 's2', 's3']);
    assert.equal(await text(page, '#typing'), '', 'typing shown in a large room');
    // The sidebar counts the room with the server's count too.
    await alice.page.locator('#my-rooms button', { hasText: '#general' }).locator('.count', { hasText: '5' }).waitFor();
    await page.getByRole('button', { name: 'Refresh the list' }).click();
    await until(async () => (await listed(page)).length === 5, 'the refreshed list');
    assert.deepEqual(await listed(page), [ALICE, 's1', 's2', 's3', 's4']);
    assert.equal(await text(page, '#typing'), '');
  } finally {
    clearInterval(typing);
  }
});

test('a cut list in a large room: "Show more members" loads the next names', async () => {
  const crowd = Array.from({ length: 120 }, (_, i) => `crowd${String(i).padStart(3, '0')}`);
  for (let i = 0; i < crowd.length; i += 40) await arrive(...crowd.slice(i, i + 40));
  bob = await person(browser, server);
  const { page } = bob;
  await signIn(page, BOB);
  await page.locator('#conv-title', { hasText: '#general' }).waitFor();
  const others = [ALICE, 's1', 's2', 's3', 's4', ...crowd].sort(byteOrder);
  const total = others.length + 1;
  await shows(page, '#members-h', `Members (${total})`);
  await page.locator('#members-pane.large').waitFor();
  // joined lists 100: bob first, then the others in byte order of their lower-cased names.
  assert.deepEqual(await listed(page), [BOB, ...others.slice(0, 99)]);
  await shows(page, '#members-note', `Showing 100 of ${total}. In a room this large the list is not updated live.`);
  await page.locator('#members-more').scrollIntoViewIfNeeded();
  await screenshot(page, 'large-room');
  // From the keyboard: the button goes with the last page, the focus stays in the member pane.
  await page.getByRole('button', { name: 'Show more members' }).focus();
  await page.keyboard.press('Enter');
  await until(async () => (await listed(page)).length === total, 'the next page of names');
  assert.deepEqual(await listed(page), [BOB, ...others]);
  await page.locator('#members-more').waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'members-pane');
  // Alice's count followed, her list did not.
  await shows(alice.page, '#members-h', `Members (${total})`);
  assert.deepEqual(pageErrors(), []);
});

test('the room is small again: the whole list, presence and typing flow again', async () => {
  depart(...seeds.keys());
  for (const p of [alice, bob]) {
    await p.page.locator('#members-pane:not(.large)').waitFor();
    await shows(p.page, '#members-h', 'Members (2 online)');
    assert.deepEqual((await listed(p.page)).sort(byteOrder), [ALICE, BOB].sort(byteOrder));
    assert.equal(await p.page.locator('#members-foot').isHidden(), true);
  }
  await arrive('s5');
  await alice.page.locator('#members .member.online[data-user="s5"]').waitFor();
  await shows(alice.page, '#members-h', 'Members (3 online)');
  depart('s5');
  await alice.page.locator('#members .member.offline[data-user="s5"]').waitFor();
  await shows(alice.page, '#members-h', 'Members (2 online)');
  await bob.page.locator('#composer-text').pressSequentially('hello al', { delay: 20 });
  await alice.page.locator('#typing', { hasText: `${BOB} is typing` }).waitFor();
  assert.deepEqual(pageErrors(), []);
});

test('more than a page of public rooms: "Show more rooms" lists the rest', async () => {
  const maker = await ProtoClient.connect(server, { label: 'maker' });
  await maker.register(`maker${TAG}`);
  await maker.login(`maker${TAG}`, PASSWORD);
  const rooms = Array.from({ length: 205 }, (_, i) => `room${String(i).padStart(3, '0')}`);
  for (const room of rooms) {
    await maker.expect({ type: 'join', room }, 'joined');
    await maker.expect({ type: 'leave', room }, 'left');
  }
  maker.terminate();
  const { page } = alice;
  // The list refreshes when a room is about to be picked; 200 per page, general among them.
  await page.locator('#join-name').focus();
  await until(async () => (await page.locator('#other-rooms button').count()) === 199, 'the first page of rooms');
  await page.getByRole('button', { name: 'Show more rooms' }).click();
  await until(async () => (await page.locator('#other-rooms button').count()) === 205, 'every room');
  const names = await page.locator('#other-rooms .conv-name').allTextContents();
  assert.deepEqual(names, rooms.map((r) => `#${r}`));
  await page.locator('#rooms-more').waitFor({ state: 'hidden' });
  assert.deepEqual(pageErrors(), []);
});
