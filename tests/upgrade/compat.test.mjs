// Live upgrades between versions: the record of each connection carries its format version; a
// binary reads every version it claims and refuses the others (live_faults.test.mjs shows a
// refused version drained). Here: an upgrade from the previous commit's build to this one, when
// that commit has live upgrades (it is built from `git archive HEAD~1`, once, under
// build/prev/); without one (or without git), from this binary writing the version before its own
// (PARLEY_TEST_RECORD_VERSION=previous, a test-only switch), which is what an older binary would
// send. Either way nobody notices, and the new process says which record versions it read.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { uniqRoom } from '../chat/lib/chat.mjs';
import { HANDOVER_TIMEOUT, Lineage, Rider, TelnetRider, assertAckedStored, assertRun, parleyBin, roomHistory } from './lib/upgrade.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// Where the record's header is: src/net/ since src/ was grouped by layer, src/ before.
const RECORD_HEADERS = ['src/net/handover_rec.h', 'src/handover_rec.h'];

// The record version a tree writes, or undefined.
function recordVersion(dir) {
  const header = RECORD_HEADERS.map((p) => path.join(dir, p)).find((p) => existsSync(p));
  const m = header && /#define HANDOVER_REC_VERSION (\d+)/.exec(readFileSync(header, 'utf8'));
  return m ? Number(m[1]) : undefined;
}

// The previous commit's release build: {bin, sha, version}, or {reason} when there is none.
function previousBuild() {
  const git = (...args) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let sha;
  try {
    sha = git('rev-parse', '--verify', 'HEAD~1^{commit}');
    if (!RECORD_HEADERS.some((p) => {
      try {
        git('cat-file', '-e', `${sha}:${p}`);
        return true;
      } catch {
        return false;
      }
    })) throw new Error('no record');
  } catch {
    return { reason: sha ? `HEAD~1 (${sha.slice(0, 10)}) has no live upgrades` : 'no git history' };
  }
  const dir = path.join(root, 'build', 'prev', sha);
  const bin = path.join(dir, 'build', 'release', 'parley');
  if (!existsSync(bin)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    execFileSync('bash', ['-c', `git -C "${root}" archive "${sha}" | tar -x -C "${dir}"`], { stdio: 'ignore' });
    execFileSync('make', ['-C', dir, '-j2', 'build/release/parley'], { stdio: 'ignore', timeout: 600000 });
  }
  return { bin, sha, version: recordVersion(dir) };
}

const here = recordVersion(root);
const prev = previousBuild();

// Riders and typists in a room; one live upgrade (two, the second from this binary to itself):
// nobody is cut off, nothing is lost or doubled. Returns the lines of the first new process.
async function rideThrough(t, { bin, env }) {
  const lineage = await Lineage.start(t, ['--rate-limit', '0', '--upgrade-binary', parleyBin], { bin, env });
  const room = uniqRoom('compat');
  const riders = [];
  for (let i = 0; i < 4; i++) {
    const r = new Rider(lineage, `cp${i}_${process.pid % 1000}`, [room]);
    await r.connect();
    riders.push(r);
  }
  const typist = new TelnetRider(lineage, `ct_${process.pid % 1000}`, room);
  await typist.connect();
  for (const r of riders) r.run(40);
  typist.run(80);
  const acked = () => riders.reduce((n, r) => n + r.acks.size, 0);
  const waitAcks = async (more) => {
    const want = acked() + more;
    const deadline = Date.now() + HANDOVER_TIMEOUT;
    while (acked() < want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };
  await waitAcks(20);
  const { newPid } = await lineage.upgrade();
  await waitAcks(20);
  await lineage.upgrade();
  await waitAcks(20);
  await Promise.all(riders.map((r) => r.stop()));
  await typist.stop();
  assert.deepEqual([...riders, typist].filter((r) => r.reconnects > 0).map((r) => r.name), [], 'nobody was cut off');
  await assertAckedStored(lineage, riders, room);
  const history = await roomHistory(lineage, room);
  for (const r of riders) assertRun(r.seen.get(room), r.start.get(room), history.at(-1).seq, `${r.name}'s messages`);
  const h = await lineage.healthz();
  assert.equal(h.drained, 0);
  assert.equal(h.handed_over, 2 * 5);
  return lineage.lines(newPid);
}

const adoptedVersions = (lines) => lines.find((l) => l.fields.msg === 'handover_records').fields.versions;

if (prev.bin) {
  test(`live: from the previous commit's build (${prev.sha.slice(0, 10)}, records v${prev.version}) to this one (v${here}), then to itself`, async (t) => {
    const lines = await rideThrough(t, { bin: prev.bin });
    assert.equal(adoptedVersions(lines), String(prev.version));
  });
} else {
  test(`live: from a binary writing the record version before this one's (v${here - 1}: ${prev.reason}), then to itself`, async (t) => {
    const lines = await rideThrough(t, { env: { PARLEY_TEST_RECORD_VERSION: 'previous' } });
    assert.equal(adoptedVersions(lines), String(here - 1));
  });
}

test(`live: records of the version before this binary's (v${here - 1}) are read, as from an older binary`, async (t) => {
  const lines = await rideThrough(t, { env: { PARLEY_TEST_RECORD_VERSION: 'previous' } });
  assert.equal(adoptedVersions(lines), String(here - 1));
});
