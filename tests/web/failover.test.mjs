// Two nodes on one PostgreSQL, each started with --peer-urls naming both: a page loaded from
// node A learns B's URL (/peers.json); when A is killed with SIGKILL the page moves to B by
// itself, without showing a status bar or an error, resumes its room from its seq (the
// conversation is intact), and a message sent after the move is stored once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { planCluster, startPostgres } from '../chat/lib/cluster.mjs';
import { seedClient } from './lib/seed.mjs';
import { countOf, launch, online, person, say, signIn, texts, until, waitMessage } from './lib/browser.mjs';

let pg;
let cluster;
const nodes = [];
let browser;

before(async () => {
  pg = startPostgres();
  cluster = await planCluster(2, pg.storeUrl);
  nodes.push(await cluster.start(0));
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const n of nodes) await n.dispose();
  pg?.stop();
});

// Records in the page every moment the status bar, the notice or the sign-in form is shown.
function watchForTrouble(page) {
  return page.evaluate(() => {
    window.trouble = [];
    const check = () => {
      for (const id of ['status', 'notice', 'signin']) {
        const el = document.getElementById(id);
        if (el && !el.hidden) window.trouble.push(`${id}: ${el.textContent.trim()}`);
      }
    };
    new MutationObserver(check).observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
    check();
  });
}

test('the page moves to the other node when its node is killed, and nothing is lost', async () => {
  const [a] = nodes;
  const greeter = await seedClient(a, 'greeter');
  await greeter.request({ type: 'join', room: 'lobby' });
  for (let i = 1; i <= 3; i++) await greeter.send('lobby', `before the fall ${i}`);

  let peersLoaded;
  const p = await person(browser, a, {
    beforeLoad: (page) => {
      peersLoaded = page.waitForResponse((r) => r.url().endsWith('/peers.json')).then((r) => r.json());
    },
  });
  const { page } = p;
  assert.deepEqual((await peersLoaded).urls, cluster.wsUrls);
  await signIn(page, 'wanderer');
  await page.locator('#join-name').fill('lobby');
  await page.locator('#join-name').press('Enter');
  await waitMessage(page, 'before the fall 3');
  await say(page, 'said on A');
  await waitMessage(page, 'said on A');
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await watchForTrouble(page);

  greeter.close();
  // B starts after A's writes (see planCluster), then A dies.
  const b = await cluster.start(1);
  nodes.push(b);
  p.networkNoiseAllowed = true; // Chromium logs the refused connections to the dead node
  await a.kill();
  await until(() => sockets.includes(b.wsUrl), 'a WebSocket to node B');
  await online(page);

  await say(page, 'said on B');
  await waitMessage(page, 'said on B');
  await until(async () => (await page.locator('#pending .msg').count()) === 0, 'no pending send');
  assert.deepEqual(await texts(page), ['before the fall 1', 'before the fall 2', 'before the fall 3', 'said on A', 'said on B']);
  assert.equal(await countOf(page, 'said on B'), 1);
  assert.deepEqual(await page.evaluate(() => window.trouble), [], 'nothing was shown during the move');
  assert.deepEqual(p.errors, []);

  // B stored it once, after A's messages, with the next seq.
  const reader = await seedClient(b, 'auditor');
  const history = await reader.request({ type: 'history', room: 'lobby', limit: 50 });
  reader.close();
  const stored = history.messages.map((m) => m.text);
  assert.deepEqual(stored.slice(-2), ['said on A', 'said on B']);
  assert.equal(stored.filter((t) => t === 'said on B').length, 1);
  const seqs = history.messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
  assert.equal(new Set(seqs).size, seqs.length);
  await p.context.close();
});
