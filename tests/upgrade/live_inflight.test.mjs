// Requests in flight at the moment of a live upgrade complete exactly once, on one side or the
// other, and nobody is disconnected: sends sent just before (not yet acked), a join waiting for
// the hub, logins queued for the password hasher (interactive cost, one hasher: they are still
// queued when the connections move, and are submitted again by the new process), a guest
// registering its own name, and telnet logins at the password prompt.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatClient, PASSWORD, guest, ms, uniq, uniqRoom } from '../chat/lib/chat.mjs';
import { TelnetClient } from '../chat/lib/telnet.mjs';
import { HANDOVER_TIMEOUT, Lineage } from './lib/upgrade.mjs';

const LOGINS = 6;

test('live: sends, a join and password checks in flight at the handover are each answered exactly once', async (t) => {
  const lineage = await Lineage.start(t, ['--rate-limit', '0', '--auth-threads', '1'], { defaults: ['--password-cost', 'interactive'] });
  const { server } = lineage;
  const room = uniqRoom('inflight');
  const name = uniq('pw');
  {
    const reg = await ChatClient.connect(server);
    await reg.register(name, PASSWORD);
    await reg.close();
  }
  const sender = await guest(server, t);
  await sender.join(room);
  const joiner = await guest(server, t);
  const reader = await guest(server, t);
  await reader.join(room);
  // A guest that registers its own name, and logins (one with a wrong password), all waiting for
  // the one hasher.
  const registering = await guest(server, t);
  const loggers = [];
  for (let i = 0; i < LOGINS; i++) {
    const c = await ChatClient.connect(server, { label: `login ${i}` });
    t.after(() => c.terminate());
    loggers.push(c);
  }
  // A telnet user at the password prompt of a registered name.
  const tn = await TelnetClient.connect(server, 'telnet pw');
  t.after(() => tn.destroy());
  await tn.waitPrompt(/Your name\? $/);
  await tn.send(name);
  await tn.waitPrompt(/Password: $/);

  // Everything at once, then the upgrade at once.
  const sends = [];
  for (let k = 1; k <= 30; k++) sends.push(sender.request({ type: 'send', room, text: `in flight ${k}`, cid: `if-${k}` }));
  const joined = joiner.request({ type: 'join', room });
  const registered = registering.request({ type: 'register', name: registering.name, password: PASSWORD });
  const logins = loggers.map((c, i) => c.request({ type: 'login', name, password: i === 0 ? 'not-the-password' : PASSWORD }, { timeoutMs: ms(30000) }));
  await tn.send(PASSWORD);
  const { oldPid } = await lineage.upgrade();

  const acks = await Promise.all(sends);
  assert.ok(acks.every((a) => a.type === 'ack'), JSON.stringify(acks.find((a) => a.type !== 'ack')));
  const seqs = acks.map((a) => a.seq);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[0] + i, 'the sends in order, each once');
  assert.equal((await joined).type, 'joined');
  const reg = await registered;
  assert.equal(reg.type, 'registered', JSON.stringify(reg));
  const answers = await Promise.all(logins);
  assert.equal(answers[0].type, 'error');
  assert.equal(answers[0].code, 'bad_credentials');
  for (const a of answers.slice(1)) assert.equal(a.type, 'welcome', JSON.stringify(a));
  await tn.nextLine(new RegExp(`joined #general`), HANDOVER_TIMEOUT, 'the telnet login');
  // Every message once, at the reader; every login and request answered once (no second reply).
  const got = await reader.messages(room, 30);
  assert.deepEqual(got.map((m) => m.seq), seqs);
  for (const c of [sender, joiner, reader, registering, ...loggers]) {
    await c.sync();
    assert.ok(c.isOpen, `${c.label} is open`);
    assert.deepEqual(c.pending().filter((m) => m.type === 'welcome' || m.type === 'registered' || m.type === 'ack' || m.type === 'joined'), [], `${c.label}: a second answer`);
  }
  assert.equal(tn.ended, false);
  // Some of the password checks were still queued when the connections moved.
  const done = lineage.lines(oldPid).find((l) => l.fields.msg === 'handover_done');
  assert.ok(Number(done.fields.logins) >= 1, done.text);
  const h = await lineage.healthz();
  assert.equal(h.drained, 0);
});
