// Live upgrades and the send bucket (rules 23, 42): a connection has one only from its first send
// until it is full and quiet again; the record carries it when there is one and a full one when
// not, so a spent bucket stays spent across an upgrade and an idle client's starts full.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { user } from '../chat/lib/chat.mjs';
import { Lineage } from './lib/upgrade.mjs';

// One send token per 10 s: the test's premise is an upgrade done well within that refill.
const REFILL_MS = 10000;

test('live: a spent send bucket is still spent after the upgrade; a client that never sent has a full one', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '1']);
  const { server } = lineage;
  const spender = await user(server, t);
  const idle = await user(server, t);
  await spender.join('general');
  await idle.join('general');
  const spentAt = Date.now();
  const first = await spender.request({ type: 'send', room: 'general', text: 'the one token' });
  assert.equal(first.type, 'ack', JSON.stringify(first));

  const { newPid } = await lineage.upgrade();
  await lineage.waitLog(newPid, 'handover_records');
  const second = await spender.request({ type: 'send', room: 'general', text: 'one too many' });
  const elapsed = Date.now() - spentAt;
  assert.ok(elapsed < REFILL_MS - 1000, `the upgrade took ${elapsed} ms: the bucket refilled meanwhile, nothing was shown`);
  assert.equal(second.type, 'error', `a send right after the upgrade: ${JSON.stringify(second)}`);
  assert.equal(second.code, 'rate_limited');
  const idleSend = await idle.request({ type: 'send', room: 'general', text: 'my first' });
  assert.equal(idleSend.type, 'ack', `the idle client's first send after the upgrade: ${JSON.stringify(idleSend)}`);
  assert.equal((await lineage.healthz()).pid, newPid);
});
