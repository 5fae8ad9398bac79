// The page is light and self-contained: everything under web/ (what parley serves) weighs under
// 100 KiB, and nothing refers to another origin.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { repoRoot } from '../blackbox/lib/server.mjs';
import { startChatServer } from '../chat/lib/server.mjs';

const WEB = path.join(repoRoot, 'web');
let server;

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? files(full) : [full];
  });
}

before(async () => {
  server = await startChatServer();
});

after(async () => {
  await server?.dispose();
});

test('the served page weighs under 100 KiB and fetches nothing from elsewhere', async () => {
  let total = 0;
  for (const file of files(WEB)) {
    const url = '/' + path.relative(WEB, file).split(path.sep).join('/');
    const res = await fetch(`http://127.0.0.1:${server.httpPort}${url}`);
    assert.equal(res.status, 200, url);
    const body = await res.text();
    total += Buffer.byteLength(body);
    if (!url.endsWith('.svg')) {
      assert.doesNotMatch(body, /(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i, `${url} refers to another origin`);
    }
    assert.doesNotMatch(body, /\binnerHTML\b|insertAdjacentHTML|document\.write/, `${url} inserts HTML`);
  }
  assert.ok(total < 100 * 1024, `page weight ${total} bytes`);
});
