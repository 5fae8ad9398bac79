// The page is light and self-contained: what a browser downloads for everything under web/ (what
// parley serves) weighs under 48 KiB, the files unpacked stay under 192 KiB, and nothing refers to
// another origin.
// The budget counts bytes as a browser receives them: tools/embed stores a gzip copy of each file
// and parley sends it to every client that accepts gzip (all browsers), so the gzip bytes are what
// a first visit costs on the wire; later visits revalidate by ETag and get 304s. The budget was
// 100 KiB, then 128 KiB, of uncompressed bytes while parley sent no compressed files; the page was
// about 131 KB (40.6 KB gzip) when compression came, and 1.1's features (search...) still need
// room. The wire budget alone would let parse and run cost grow unseen (text compresses well), so
// the unpacked size has a ceiling of its own, half as much again as the page then. Figures and
// how they were measured: docs/benchmarks.md ("Page weight").
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { httpRequest } from '../blackbox/lib/http.mjs';
import { repoRoot } from '../blackbox/lib/server.mjs';
import { startChatServer } from '../chat/lib/server.mjs';

const WEB = path.join(repoRoot, 'web');
const WIRE_BUDGET = 48 * 1024;
const UNPACKED_CEILING = 192 * 1024;
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

test('the served page weighs under 48 KiB on the wire (192 KiB unpacked) and fetches nothing from elsewhere', async () => {
  let wire = 0;
  let unpacked = 0;
  for (const file of files(WEB)) {
    const url = '/' + path.relative(WEB, file).split(path.sep).join('/');
    // A raw request as a browser makes it: the body is counted exactly as sent.
    const res = await httpRequest(server.httpPort, {
      path: url,
      headers: [
        ['Host', `127.0.0.1:${server.httpPort}`],
        ['Accept-Encoding', 'gzip, deflate, br, zstd'],
        ['Connection', 'close'],
      ],
    });
    assert.equal(res.status, 200, url);
    const encoding = res.headers['content-encoding'];
    assert.ok(encoding === undefined || encoding === 'gzip', `${url}: ${encoding}`);
    const body = encoding === 'gzip' ? gunzipSync(res.body) : res.body;
    wire += res.body.length;
    unpacked += body.length;
    const text = body.toString('utf8');
    if (!url.endsWith('.svg')) {
      assert.doesNotMatch(text, /(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i, `${url} refers to another origin`);
    }
    assert.doesNotMatch(text, /\binnerHTML\b|insertAdjacentHTML|document\.write/, `${url} inserts HTML`);
  }
  assert.ok(wire < WIRE_BUDGET, `page weight on the wire ${wire} bytes`);
  assert.ok(unpacked < UNPACKED_CEILING, `page weight unpacked ${unpacked} bytes`);
  // Compression is on for the page's text: this fails if the gzip copies go missing.
  assert.ok(wire < unpacked / 2, `${wire} bytes sent for ${unpacked}`);
});
