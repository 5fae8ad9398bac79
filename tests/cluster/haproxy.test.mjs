// docs/haproxy.cfg, run as it is by Debian's haproxy in front of two parley nodes on one
// PostgreSQL: WebSocket and telnet clients log in and chat through it; node1 is killed with
// SIGKILL; the clients connect again through HAProxy, land on node2, and resume from their seq
// with nothing lost, nothing twice and no gap (the history comes from the shared store).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { repoRoot } from '../blackbox/lib/server.mjs';
import { EVENT_TIMEOUT, guest, tab, user, withTimeout } from '../chat/lib/chat.mjs';
import { freePorts, planCluster, startPostgres } from '../chat/lib/cluster.mjs';
import { telnetLogin } from '../chat/lib/telnet.mjs';

const CONFIG = path.join(repoRoot, 'docs', 'haproxy.cfg');

// haproxy in the foreground on docs/haproxy.cfg, the addresses given by the environment the
// file reads; its stderr (server state changes) can be awaited.
function startHaproxy(cluster, webPort, telnetPort) {
  const env = {
    ...process.env,
    PARLEY_WEB_BIND: `127.0.0.1:${webPort}`,
    PARLEY_TELNET_BIND: `127.0.0.1:${telnetPort}`,
  };
  for (const i of [0, 1]) {
    env[`PARLEY_NODE${i + 1}`] = '127.0.0.1';
    env[`PARLEY_NODE${i + 1}_HTTP`] = String(cluster.httpPorts[i]);
    env[`PARLEY_NODE${i + 1}_TELNET`] = String(cluster.telnetPorts[i]);
  }
  const child = spawn('haproxy', ['-db', '-f', CONFIG], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const watchers = new Set();
  child.stderr.on('data', (d) => {
    log += d;
    for (const w of watchers) w();
  });
  child.on('error', (err) => (log += `haproxy: ${err.message} (scripts/setup.sh --test installs it)\n`));
  const exited = new Promise((resolve) => child.on('close', resolve));
  // Resolves once every line of `lines` has appeared in the log.
  const logged = (lines, what) => withTimeout(new Promise((resolve) => {
    const check = () => {
      if (!lines.every((l) => log.includes(l))) return;
      watchers.delete(check);
      resolve();
    };
    watchers.add(check);
    check();
  }), EVENT_TIMEOUT, `haproxy to log ${what}\n${log}`);
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  };
  return { logged, stop, exited };
}

const state = (node, up) => ['parley_web', 'parley_telnet'].map((b) => `Server ${b}/${node} is ${up ? 'UP' : 'DOWN'}`);

let pg;
let cluster;
const nodes = [];
let haproxy;
let lb; // what the clients connect to: HAProxy's two frontends

before(async () => {
  pg = startPostgres();
  cluster = await planCluster(2, pg.storeUrl);
  nodes.push(await cluster.start(0));
  const [webPort, telnetPort] = await freePorts(2);
  haproxy = startHaproxy(cluster, webPort, telnetPort);
  lb = { wsUrl: `ws://127.0.0.1:${webPort}/ws`, telnetPort };
  // node2 is not started yet: HAProxy's checks take it out, so every client goes to node1.
  await haproxy.logged(state('node2', false), 'node2 DOWN');
});

after(async () => {
  await haproxy?.stop();
  for (const n of nodes) await n.dispose();
  pg?.stop();
});

test('clients through HAProxy move to the other node when theirs is killed, and resume with nothing lost', async (t) => {
  const texts = (msgs) => msgs.map((m) => m.text);
  // A registered user and a guest on WebSocket, a guest on telnet, all in general, all on node1.
  const alice = await user(lb, t, 'alice');
  const bob = await guest(lb, t, 'bob');
  assert.equal(alice.hello.node, 'node1');
  assert.equal(bob.hello.node, 'node1');
  await alice.join('general');
  await bob.join('general');
  const carol = await telnetLogin(lb, t, 'carol');

  const first = await alice.say('general', 'one', { cid: 'a1' });
  await alice.say('general', 'two', { cid: 'a2' });
  const bobSaw = await bob.messages('general', 2);
  assert.deepEqual(texts(bobSaw), ['one', 'two']);
  await carol.nextLine('[#general] alice: two');
  // Bob goes away; three more are said while he is gone (one from telnet).
  bob.terminate();
  await alice.say('general', 'three', { cid: 'a3' });
  await carol.send('four from telnet');
  await carol.nextLine('[#general] carol: four from telnet');
  await alice.say('general', 'five', { cid: 'a5' });
  const aliceSaw = await alice.messages('general', 5);
  assert.deepEqual(texts(aliceSaw), ['one', 'two', 'three', 'four from telnet', 'five']);

  // node2 starts (after the writes: see planCluster), HAProxy sees it, node1 dies.
  nodes.push(await cluster.start(1));
  await haproxy.logged(state('node2', true), 'node2 UP');
  await nodes[0].kill();
  await Promise.all([alice.waitClosed(), carol.closed]);

  // Everybody comes back through HAProxy and lands on node2.
  const alice2 = await tab(lb, t, alice);
  const bob2 = await tab(lb, t, bob);
  assert.equal(alice2.hello.node, 'node2');
  assert.equal(bob2.hello.node, 'node2');
  // Alice saw everything: her resume replays nothing. Bob replays exactly what he missed.
  const aliceBack = await alice2.join('general', aliceSaw.at(-1).seq);
  const bobBack = await bob2.join('general', bobSaw.at(-1).seq);
  assert.equal(aliceBack.seq, aliceSaw.at(-1).seq);
  assert.equal(bobBack.seq, aliceSaw.at(-1).seq);
  const missed = await bob2.messages('general', 3);
  assert.deepEqual(texts(missed), ['three', 'four from telnet', 'five']);
  assert.deepEqual(missed.map((m) => m.seq), [3, 4, 5].map((k) => first.seq + k - 1));
  const carol2 = await telnetLogin(lb, t, 'carol');

  // A retry of an old cid on node2 is acked with the first seq, not stored again.
  const again = await alice2.say('general', 'one', { cid: 'a1' });
  assert.equal(again.seq, first.seq);
  // Chat goes on through node2, every message once.
  const six = await alice2.say('general', 'six', { cid: 'a6' });
  assert.equal(six.seq, aliceSaw.at(-1).seq + 1);
  await carol2.nextLine('[#general] alice: six');
  const bobNext = await bob2.nextMessage('general');
  assert.deepEqual([bobNext.text, bobNext.seq], ['six', six.seq]);

  // The store holds each message once, in seq order with no gap.
  const history = await alice2.expect({ type: 'history', room: 'general', limit: 50 }, 'history');
  assert.deepEqual(texts(history.messages), ['one', 'two', 'three', 'four from telnet', 'five', 'six']);
  const seqs = history.messages.map((m) => m.seq);
  assert.deepEqual(seqs, seqs.map((_, k) => first.seq + k));
});
