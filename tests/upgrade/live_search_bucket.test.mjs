// Live upgrades and the search bucket (protocol 1.1 rule 73): the record (version 5) carries it,
// so a client that spent its search tokens before an upgrade does not find the bucket full after.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { user } from '../chat/lib/chat.mjs';
import { Lineage } from './lib/upgrade.mjs';

// One search token per 10 s: the test's premise is an upgrade done well within that refill.
const REFILL_MS = 10000;

test('live: a search bucket spent before the upgrade is still spent after it', async (t) => {
  const lineage = await Lineage.start(t, ['--search-rate', '1']);
  const { server } = lineage;
  const a = await user(server, t);
  const spentAt = Date.now();
  const first = await a.request({ type: 'search', q: 'anything' });
  assert.equal(first.type, 'search', JSON.stringify(first));

  const { newPid } = await lineage.upgrade();
  const records = await lineage.waitLog(newPid, 'handover_records');
  assert.ok(Number(records.fields.versions) >= 5, `records of version ${records.fields.versions}`);
  const second = await a.request({ type: 'search', q: 'anything' });
  const elapsed = Date.now() - spentAt;
  assert.ok(elapsed < REFILL_MS - 1000, `the upgrade took ${elapsed} ms: the bucket refilled meanwhile, nothing was shown`);
  assert.equal(second.type, 'error', `a search right after the upgrade: ${JSON.stringify(second)}`);
  assert.equal(second.code, 'rate_limited');
  assert.equal((await lineage.healthz()).pid, newPid);
});
