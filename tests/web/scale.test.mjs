// The page at scale, measured with Chromium's own clocks (performance.now in the page, and CDP's
// Performance.getMetrics for the script, style and layout work it did): scrolling back through
// 10,000 messages a page of 50 at a time, typing with 10,000 loaded, and switching rooms. Each
// page of scroll-back is put in front of what is shown without rendering it again (the same
// elements stay, counted, not timed). Typing and switching have generous bounds as ratios against
// a peer measured in the same run: they catch a return to work that grows with what is loaded,
// not a slow machine. The figures are printed (`# scale:` lines) for docs/benchmarks.md.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startChatServer } from '../chat/lib/server.mjs';
import { seedClient } from './lib/seed.mjs';
import { launch, person, signIn, waitMessage } from './lib/browser.mjs';

const BIG = 10000;
const SMALL = 100;
const PAGE = 50;
let server;
let browser;
let p;
let cdp;
const figures = {};

async function seed(room, n) {
  const c = await seedClient(server, `seeder-${room}`);
  await c.request({ type: 'join', room });
  for (let i = 0; i < n; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => c.send(room, `${room} line ${i + k + 1}`)));
  }
  c.close();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x) => Math.round(x * 100) / 100;

// Script + style + layout time the page spent, in ms, by CDP.
async function work() {
  const { metrics } = await cdp.send('Performance.getMetrics');
  const get = (name) => metrics.find((m) => m.name === name)?.value ?? 0;
  return 1000 * (get('ScriptDuration') + get('RecalcStyleDuration') + get('LayoutDuration'));
}

const shownCount = () => p.page.locator('#messages .msg').count();

async function openRoom(name) {
  await p.page.locator('#conv-btn, #my-rooms button', { hasText: `#${name}` }).click();
  await p.page.locator('#conv-title', { hasText: `#${name}` }).waitFor();
}

// Per key: from keydown to the end of the page's own input handling with layout done.
async function typing(keys = 40) {
  await p.page.evaluate(() => {
    window.keyTimes = [];
    let t0 = 0;
    window.addEventListener('keydown', () => { t0 = performance.now(); }, { capture: true });
    window.addEventListener('input', () => {
      void document.body.offsetHeight;
      window.keyTimes.push(performance.now() - t0);
    });
  });
  await p.page.locator('#composer-text').focus();
  const before = await work();
  await p.page.keyboard.type('x'.repeat(keys));
  const cdpPerKey = ((await work()) - before) / keys;
  const times = await p.page.evaluate(() => window.keyTimes.splice(0));
  await p.page.locator('#composer-text').fill('');
  return { median: median(times), max: Math.max(...times), cdpPerKey };
}

// From the click on a room to its messages laid out (and to the next frame after that).
async function switchTo(name) {
  return p.page.evaluate((room) => new Promise((resolve) => {
    const button = [...document.querySelectorAll('#my-rooms button')].find((b) => b.dataset.conv === room);
    const t0 = performance.now();
    button.click();
    void document.body.offsetHeight;
    const laidOut = performance.now() - t0;
    requestAnimationFrame(() => setTimeout(() => resolve({ laidOut, frame: performance.now() - t0 })));
  }), name);
}

before(async () => {
  server = await startChatServer(['--rate-limit', '0']);
  await seed('big', BIG);
  await seed('small', SMALL);
  browser = await launch();
  p = await person(browser, server);
  cdp = await p.context.newCDPSession(p.page);
  await cdp.send('Performance.enable');
  await signIn(p.page, 'scroller');
  for (const room of ['small', 'big']) {
    await p.page.locator('#join-name').fill(room);
    await p.page.locator('#join-name').press('Enter');
    await p.page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
  }
  await waitMessage(p.page, `big line ${BIG}`);
});

after(async () => {
  await browser?.close();
  await server?.dispose();
  for (const [k, v] of Object.entries(figures)) console.log(`# scale: ${k} ${JSON.stringify(v)}`);
});

test('scroll-back through 10,000 messages adds each page in front, rendering nothing again', async () => {
  const { page } = p;
  // The newest message's element is kept and watched: it must never be replaced.
  await page.evaluate(() => {
    window.newest = [...document.querySelectorAll('#messages .msg')].at(-1);
    window.removed = 0;
    window.added = 0; // message elements put in the list (a moved one counts again)
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.removedNodes) if (n.nodeType === 1 && n.querySelector?.('.msg, .msg-text')) window.removed += 1;
        for (const n of r.addedNodes) if (n.nodeType === 1) window.added += n.classList.contains('msg') ? 1 : n.querySelectorAll('.msg').length;
      }
    }).observe(document.querySelector('#messages'), { childList: true, subtree: true });
  });
  const perPage = []; // CDP work per page, in groups of 20 pages
  const wall = [];
  let shown = await shownCount();
  const initial = shown;
  const t0 = Date.now();
  let group = await work();
  let pages = 0;
  while (shown < BIG) {
    // In the page: scroll to the top, and the time until the next page is in (the observer above
    // counts it first), with no polling from here that would grow with the list.
    const took = await page.evaluate(() => new Promise((resolve) => {
      const before = window.added;
      const t0 = performance.now();
      new MutationObserver((_, observer) => {
        if (window.added === before) return;
        observer.disconnect();
        resolve(performance.now() - t0);
      }).observe(document.querySelector('#messages'), { childList: true, subtree: true });
      document.querySelector('#log').scrollTop = 0;
    }));
    wall.push(took);
    shown = initial + await page.evaluate(() => window.added);
    pages += 1;
    if (pages % 20 === 0) {
      const now = await work();
      perPage.push((now - group) / 20);
      group = now;
    }
  }
  figures.scrollBack = {
    messages: shown, pages, totalSeconds: round((Date.now() - t0) / 1000),
    scrollToPageInMs: { first20: round(median(wall.slice(0, 20))), last20: round(median(wall.slice(-20))) },
    cdpWorkPerPageMs: perPage.map(round),
  };
  await page.locator('#older', { hasText: 'beginning' }).waitFor();
  assert.equal(shown, BIG);
  assert.equal(await shownCount(), BIG);
  const check = await page.evaluate(() => ({
    same: window.newest.isConnected && [...document.querySelectorAll('#messages .msg')].at(-1) === window.newest,
    removed: window.removed,
    added: window.added,
  }));
  assert.ok(check.same, 'the newest message is the same element it was before scrolling back');
  // Only the group a page joins onto moves (its messages keep their elements): one per page.
  assert.ok(check.removed <= pages, `message elements removed: ${check.removed}`);
  const texts = await page.locator('#messages .msg-text').evaluateAll((els) => [els[0].textContent, els.at(-1).textContent]);
  assert.deepEqual(texts, ['big line 1', `big line ${BIG}`]);
  // Each message is rendered once (plus at most a page moved into a group per page), not once
  // per page after it: rendering grows with what is added, not with what is shown.
  assert.ok(check.added <= (BIG - initial) + pages * PAGE, `message elements added: ${check.added}`);
  figures.scrollBack.elementsAdded = check.added;
});

test('typing with 10,000 messages loaded, and switching rooms', async () => {
  figures.typingAll10kShown = await typing();
  const intoSmall = await switchTo('small');
  figures.typingSmallRoom = await typing();
  const intoBig = [];
  const intoSmallAgain = [intoSmall];
  for (let i = 0; i < 5; i++) {
    intoBig.push(await switchTo('big'));
    intoSmallAgain.push(await switchTo('small'));
  }
  await openRoom('big');
  figures.typingBigRoom10kLoaded = await typing();
  figures.switchToBigMs = { laidOut: round(median(intoBig.map((x) => x.laidOut))), frame: round(median(intoBig.map((x) => x.frame))) };
  figures.switchToSmallMs = { laidOut: round(median(intoSmallAgain.map((x) => x.laidOut))), frame: round(median(intoSmallAgain.map((x) => x.frame))) };
  for (const k of ['typingAll10kShown', 'typingSmallRoom', 'typingBigRoom10kLoaded']) {
    figures[k] = Object.fromEntries(Object.entries(figures[k]).map(([a, b]) => [a, round(b)]));
  }
  const small = figures.typingSmallRoom.median;
  assert.ok(figures.typingBigRoom10kLoaded.median <= 4 * small + 8, `typing with 10,000 loaded: ${JSON.stringify(figures)}`);
  assert.ok(figures.typingAll10kShown.median <= 4 * small + 16, `typing with 10,000 shown: ${JSON.stringify(figures)}`);
  // The big room opens about as fast as the small one: only its last messages are rendered.
  assert.ok(figures.switchToBigMs.laidOut <= 4 * figures.switchToSmallMs.laidOut + 50, `switching: ${JSON.stringify(figures)}`);
  assert.equal(await shownCount(), 2 * PAGE, 'the window of a room just opened');
  assert.deepEqual(p.errors, []);
});
