// Login throttling: no client can deny others their login. Failed logins are throttled per
// network and per account (rate_limited with retry_after, the same line on telnet), password
// checks queue fairly per network and run on a bounded pool of hashers, and the time a login waits
// for the hasher does not count against its deadline. Hostile clients connect from other loopback
// addresses (all of 127/8 reaches the server on Linux).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatServer } from './lib/server.mjs';
import { EVENT_TIMEOUT, PASSWORD, assertKeys, connect, eventually, ms, uniq } from './lib/chat.mjs';
import { TelnetClient, esc } from './lib/telnet.mjs';
import { scrape, sum } from './lib/metrics.mjs';

const LONG = ms(60000);
const WRONG = 'not-the-password';

// A server for one test with `args`; `cost` is --password-cost (interactive: hashing really costs).
async function serverFor(t, args = [], { cost = 'min' } = {}) {
  const server = await ChatServer.start(['--password-cost', cost, ...args], { defaults: [] });
  t.after(() => server.dispose());
  return server;
}

const from = (server, t, localAddress) => connect(server, t, { localAddress, label: `client at ${localAddress}` });

async function metric(server, name, labels) {
  return sum(await scrape(server), name, labels);
}

const hashes = (server) => metric(server, 'parley_auth_hashes_total');
const throttled = (server, reason) => metric(server, 'parley_logins_throttled_total', { reason });

// Registers each name (password PASSWORD) on one connection from `localAddress`. With the
// interactive cost, registrations share one hasher: the tenth of ten sent at once waits for nine
// real hashes, which on a loaded machine is more than a usual reply's timeout.
async function register(server, t, names, localAddress = '127.0.0.1') {
  const c = await from(server, t, localAddress);
  for (const name of names) {
    await c.expect({ type: 'register', name, password: PASSWORD }, 'registered', { timeoutMs: LONG });
  }
  await c.close();
}

function login(c, name, password = WRONG) {
  return c.request({ type: 'login', name, password }, { timeoutMs: LONG });
}

// Asserts a throttled login's error: rate_limited, retry_after whole seconds >= 1, said in words.
function assertThrottled(reply, what) {
  assert.equal(reply.code, 'rate_limited', `${what}: ${JSON.stringify(reply)}`);
  assertKeys(reply, ['type', 'id', 'code', 'message', 'retry_after'], what);
  assert.ok(Number.isInteger(reply.retry_after) && reply.retry_after >= 1, `${what}: ${JSON.stringify(reply)}`);
  assert.match(reply.message, new RegExp(`; try again in ${reply.retry_after} s$`), what);
  return reply.retry_after;
}

// Tries a wrong password every 50 ms until it is checked again (answered bad_credentials, not
// rate_limited); every refusal on the way must be rate_limited. Returns the number of refusals.
async function waitOutDelay(c, name) {
  let refused = 0;
  await eventually(
    async () => {
      const reply = await login(c, name);
      if (reply.code === 'rate_limited') {
        refused += 1;
        return false;
      }
      assert.equal(reply.code, 'bad_credentials', JSON.stringify(reply));
      return true;
    },
    LONG,
    `${name}: a wrong password checked again after its delay`,
  );
  return refused;
}

test('per network: rate_limited with retry_after past 5 failures; after the wait the next is checked; delays double', async (t) => {
  const server = await serverFor(t);
  const victim = uniq('victim');
  await register(server, t, [victim]);
  const c = await from(server, t, '127.0.0.2');
  for (let i = 1; i <= 5; i++) assert.equal((await login(c, victim)).code, 'bad_credentials', `failure ${i}`);
  const byAddress = await throttled(server, 'address');
  assert.equal(assertThrottled(await login(c, victim), 'attempt 6'), 1);
  assert.equal(await throttled(server, 'address'), byAddress + 1, 'the refusal is counted by reason');
  // Refused attempts cost no hash; the first after the delay is hashed again.
  const before = await hashes(server);
  assert.ok((await waitOutDelay(c, victim)) >= 0);
  assert.equal(await hashes(server), before + 1, 'exactly the attempt after the delay was hashed');
  assert.equal(assertThrottled(await login(c, victim), 'after failure 6'), 2);
  await waitOutDelay(c, victim);
  assert.equal(assertThrottled(await login(c, victim), 'after failure 7'), 4);
  // Another network is not affected, nor the owner.
  const other = await from(server, t, '127.0.0.3');
  assert.equal((await login(other, victim)).code, 'bad_credentials');
  const owner = await from(server, t, '127.0.0.1');
  assert.equal((await login(owner, victim, PASSWORD)).type, 'welcome');
});

test('a password for a name that is not registered fails without hashing, and counts for the network', async (t) => {
  const server = await serverFor(t);
  const c = await from(server, t, '127.0.0.2');
  const before = await hashes(server);
  for (let i = 1; i <= 5; i++) assert.equal((await login(c, uniq('nobody'))).code, 'bad_credentials');
  assert.equal(await hashes(server), before, 'no account, no hash');
  assertThrottled(await login(c, uniq('nobody')), 'attempt 6');
});

test('a success forgives the failures just before it on the same account, and only those', async (t) => {
  const server = await serverFor(t);
  const [mine, victimA, theirs, victimB] = [uniq('mine'), uniq('vica'), uniq('theirs'), uniq('vicb')];
  await register(server, t, [victimA, victimB]);
  await register(server, t, [mine], '127.0.0.4');
  await register(server, t, [theirs], '127.0.0.5');
  // Three typing mistakes on one's own account, then the right password: forgiven, so five
  // failures elsewhere are still free (unforgiven, the third of them would be refused).
  const typist = await from(server, t, '127.0.0.4');
  for (let i = 0; i < 3; i++) assert.equal((await login(typist, mine)).code, 'bad_credentials');
  assert.equal((await login(typist, mine, PASSWORD)).type, 'welcome');
  const typist2 = await from(server, t, '127.0.0.4');
  for (let i = 1; i <= 5; i++) assert.equal((await login(typist2, victimA)).code, 'bad_credentials', `failure ${i}`);
  assertThrottled(await login(typist2, victimA), 'past the allowance');
  // Guesses on another account are not laundered by logging in to one's own.
  const launderer = await from(server, t, '127.0.0.5');
  for (let i = 0; i < 4; i++) assert.equal((await login(launderer, victimB)).code, 'bad_credentials');
  assert.equal((await login(launderer, theirs, PASSWORD)).type, 'welcome');
  const launderer2 = await from(server, t, '127.0.0.5');
  assert.equal((await login(launderer2, victimB)).code, 'bad_credentials', 'failure 5');
  assertThrottled(await login(launderer2, victimB), 'failure 6 after the success elsewhere');
});

test('per account: guesses from many networks make it wait, except for the network its owner used', async (t) => {
  const server = await serverFor(t);
  const target = uniq('target');
  await register(server, t, [target]); // from 127.0.0.1: the owner's network
  // Ten failures from three networks (each under its own allowance): the account must wait 1 s.
  for (const [address, n] of [['127.0.0.20', 4], ['127.0.0.21', 4], ['127.0.0.22', 2]]) {
    const c = await from(server, t, address);
    for (let i = 0; i < n; i++) assert.equal((await login(c, target)).code, 'bad_credentials');
  }
  const byAccount = await throttled(server, 'account');
  const fresh = await from(server, t, '127.0.0.23');
  const refusal = await login(fresh, target);
  assert.equal(assertThrottled(refusal, 'a fresh network on a throttled account'), 1);
  assert.match(refusal.message, /account/);
  assert.equal(await throttled(server, 'account'), byAccount + 1);
  // Two more failures after the waits: now it waits 4 s.
  await waitOutDelay(fresh, target);
  await waitOutDelay(await from(server, t, '127.0.0.24'), target);
  // The owner, from where they registered, logs in; a stranger with the right password just
  // after is still refused, so the throttle was on when the owner got in.
  const owner = await from(server, t, '127.0.0.1');
  assert.equal((await login(owner, target, PASSWORD)).type, 'welcome');
  const stranger = await from(server, t, '127.0.0.25');
  assertThrottled(await login(stranger, target, PASSWORD), 'the right password from elsewhere, while throttled');
});

test('telnet: "! rate_limited: ...; try again in N s" and the same prompt again', async (t) => {
  const server = await serverFor(t);
  const name = uniq('Tel');
  await register(server, t, [name]);
  const c = await TelnetClient.connect(server, 'telnet at 127.0.0.30', EVENT_TIMEOUT, { localAddress: '127.0.0.30' });
  t.after(() => c.destroy());
  await c.waitPrompt(/name/i);
  await c.send(name);
  for (let i = 1; i <= 3; i++) {
    await c.waitPrompt(/password/i, undefined, `Password: prompt #${i}`);
    await c.send(`wrong-password-${i}`);
  }
  await c.nextLine(/^! bad_credentials: \S/);
  await c.waitPrompt(/name/i);
  await c.send(`/login ${name} wrong-password-4`);
  await c.nextLine(/^! bad_credentials: \S/);
  await c.waitPrompt(/name/i);
  await c.send(name);
  await c.waitPrompt(/password/i);
  await c.send('wrong-password-5');
  await c.nextLine('* Wrong password.');
  await c.waitPrompt(/password/i);
  await c.send('wrong-password-6');
  // Refused before any check: not one of the three tries, so the password prompt comes again.
  const line = await c.nextLine(/^! /);
  assert.match(line, /^! rate_limited: .+; try again in 1 s$/);
  await c.waitPrompt(/password/i, undefined, 'the Password: prompt after rate_limited');
  // /login at the name prompt is refused the same way, and the name prompt comes again.
  const d = await TelnetClient.connect(server, 'second telnet at 127.0.0.30', EVENT_TIMEOUT, { localAddress: '127.0.0.30' });
  t.after(() => d.destroy());
  await d.waitPrompt(/name/i);
  await d.send(`/login ${name} ${PASSWORD}`);
  assert.match(await d.nextLine(/^! /), /^! rate_limited: .+; try again in \d+ s$/);
  await d.waitPrompt(/name/i);
  // Once the delay is over, the right password gets in.
  await eventually(
    async () => {
      await c.send(PASSWORD);
      const { match } = await c.until(/^(! rate_limited: |\* .* joined #general)/, LONG);
      if (match.startsWith('*')) return true;
      await c.waitPrompt(/password/i);
      return false;
    },
    LONG,
    'the right password after the delay',
  );
  assert.ok(new RegExp(`^\\* ${esc(name)} joined #general`).test(c.lines.at(-1).text));
});

test('parallel hashers let no extra guess through: attempts at once get exactly the allowance checked', async (t) => {
  const server = await serverFor(t, ['--auth-threads', '2'], { cost: 'interactive' });
  const [a, b] = [uniq('pa'), uniq('pb')];
  await register(server, t, [a, b]);
  const codes = async (conns, name) => (await Promise.all(conns.map((c) => login(c, name)))).map((r) => r.code).sort();
  // Ten at once from one network: five checked, five refused (each waiting on those under way).
  const one = await Promise.all(Array.from({ length: 10 }, () => from(server, t, '127.0.0.50')));
  assert.deepEqual(await codes(one, a), [...Array(5).fill('bad_credentials'), ...Array(5).fill('rate_limited')]);
  // Twelve at once on one account, from twelve networks: ten checked, two refused.
  const many = await Promise.all(Array.from({ length: 12 }, (_, i) => from(server, t, `127.0.1.${i + 1}`)));
  assert.deepEqual(await codes(many, b), [...Array(10).fill('bad_credentials'), ...Array(2).fill('rate_limited')]);
});

test('--auth-queue-address 1: a second login from the network while one is checked → rate_limited', async (t) => {
  const server = await serverFor(t, ['--auth-queue-address', '1', '--auth-threads', '1'], { cost: 'interactive' });
  const name = uniq('q');
  await register(server, t, [name]);
  const a = await from(server, t, '127.0.0.40');
  const b = await from(server, t, '127.0.0.40');
  const replies = await Promise.all([login(a, name), login(b, name)]);
  const codes = replies.map((r) => r.code).sort();
  assert.deepEqual(codes, ['bad_credentials', 'rate_limited'], JSON.stringify(replies));
  const refusal = replies.find((r) => r.code === 'rate_limited');
  assert.equal(assertThrottled(refusal, 'the second login'), 1);
  assert.match(refusal.message, /waiting/);
  assert.equal(await throttled(server, 'queue'), 1);
});

// --- attacks: hostile connections trying wrong passwords as fast as they are answered ---

// Opens `ws` WebSocket and `telnet` telnet connections, spread over `addresses` in turn; once all
// are open, each tries wrong passwords for `names` in turn (connection i its own name names[i],
// with `own`), as fast as it is answered. Returns {stats, stop()}.
async function attack(server, t, { addresses, names, ws, telnet = 0, own = false }) {
  const nameFor = (i, k) => (own ? names[i] : names[k % names.length]);
  const stats = { answers: 0, codes: {}, retryAfter: new Set(), telnetRefusals: 0, welcomed: 0 };
  let stopped = false;
  const count = (code) => {
    stats.answers += 1;
    stats.codes[code] = (stats.codes[code] ?? 0) + 1;
  };
  const wsClients = await Promise.all(
    Array.from({ length: ws }, (_, i) => {
      const localAddress = addresses[i % addresses.length];
      return connect(server, t, { localAddress, label: `hostile ${i} at ${localAddress}` });
    }),
  );
  const telnetClients = await Promise.all(
    Array.from({ length: telnet }, async (_, i) => {
      const localAddress = addresses[i % addresses.length];
      const c = await TelnetClient.connect(server, `hostile telnet ${i}`, EVENT_TIMEOUT, { localAddress });
      t.after(() => c.destroy());
      await c.waitPrompt(/name/i);
      return c;
    }),
  );
  const wsRun = async (c, i) => {
    for (let k = i; !stopped && c.isOpen; k++) {
      let reply;
      try {
        reply = await login(c, nameFor(i, k), `wrong-${k}-password`);
      } catch {
        return; // closed at the end
      }
      c.log.length = 0;
      if (reply.type === 'welcome') stats.welcomed += 1;
      if (reply.code === 'rate_limited') stats.retryAfter.add(reply.retry_after);
      count(reply.code ?? reply.type);
    }
  };
  const telnetRun = async (c, i) => {
    try {
      for (let k = i; !stopped; k++) {
        await c.send(`/login ${nameFor(i, k)} wrong-${k}-password`);
        const line = await c.nextLine(/^! /, LONG);
        if (/^! rate_limited: .+; try again in \d+ s$/.test(line)) stats.telnetRefusals += 1;
        count(line.slice(2, line.indexOf(':')));
        await c.waitPrompt(/name/i, LONG);
        c.discardLines();
        c.raw.length = 0;
        c.lines.length = 0;
      }
    } catch {
      // closed at the end
    }
  };
  const runs = [...wsClients.map(wsRun), ...telnetClients.map(telnetRun)];
  return {
    stats,
    async stop() {
      stopped = true;
      for (const c of wsClients) c.terminate();
      for (const c of telnetClients) c.destroy();
      await Promise.all(runs);
    },
  };
}

// The real user logs in (right password, from `localAddress`) beside the attack. Returns how many
// hashes finished between its login being sent and its welcome: the attempts it waited for.
async function realLogin(server, t, name, localAddress) {
  const c = await from(server, t, localAddress);
  const before = await hashes(server);
  const welcome = await login(c, name, PASSWORD);
  const after = await hashes(server);
  assert.equal(welcome.type, 'welcome', `the real user: ${JSON.stringify(welcome)}`);
  assert.equal(welcome.name, name);
  return after - before;
}

const queueLength = (server) => metric(server, 'parley_auth_queue_length');

test('attack from one address (WebSocket and telnet), default throttles and cost: the real user still logs in', async (t) => {
  const server = await serverFor(t, ['--auth-threads', '2'], { cost: 'interactive' });
  const [alice, bob, carol] = [uniq('alice'), uniq('bob'), uniq('carol')];
  await register(server, t, [alice, bob, carol]);
  const hostile = await attack(server, t, { addresses: ['127.0.0.2'], names: [alice, bob, carol], ws: 140, telnet: 10 });
  // Steady state: the hostile network used up its allowance and is refused without hashing, on
  // both transports.
  await eventually(
    async () =>
      hostile.stats.codes.bad_credentials >= 5 && hostile.stats.answers >= 1500 && hostile.stats.telnetRefusals >= 10,
    LONG,
    'the attack under way',
  );
  const waited = await realLogin(server, t, alice, '127.0.0.1');
  const stats = { ...hostile.stats };
  await hostile.stop();
  assert.ok(waited <= 6, `the real user waited for ${waited} hashes`);
  assert.equal(stats.welcomed, 0);
  assert.ok(stats.codes.rate_limited > 1000, JSON.stringify(stats.codes));
  assert.ok(stats.codes.bad_credentials >= 5, JSON.stringify(stats.codes));
  assert.ok([...stats.retryAfter].every((s) => Number.isInteger(s) && s >= 1), [...stats.retryAfter].join());
});

test('attack spread over 150 addresses, default throttles and cost: the real user goes ahead of the queue', async (t) => {
  const server = await serverFor(t, ['--auth-threads', '2'], { cost: 'interactive' });
  // Enough accounts that the hostile attempts stay worth hashing (each account takes 10 failures
  // before it makes them wait): the queue stays long while the real user logs in.
  const names = Array.from({ length: 8 }, (_, i) => uniq(`acct${i}_`));
  await Promise.all([register(server, t, names.slice(0, 4)), register(server, t, names.slice(4))]);
  const alice = names[0];
  const addresses = Array.from({ length: 150 }, (_, i) => `127.0.0.${10 + i}`);
  const hostile = await attack(server, t, { addresses, names, ws: 140, telnet: 10 });
  await eventually(async () => (await queueLength(server)) >= 100, LONG, '100 hostile attempts queued');
  const waited = await realLogin(server, t, alice, '127.0.0.1');
  await hostile.stop();
  assert.ok(waited <= 6, `the real user waited for ${waited} hashes`);
  assert.equal(hostile.stats.welcomed, 0);
});

test('throttles off: one address\'s 150 queued attempts never wait ahead of another address\'s', async (t) => {
  const server = await serverFor(
    t,
    ['--auth-threads', '2', '--login-fails-address', '0', '--login-fails-account', '0', '--auth-queue-address', '1000'],
    { cost: 'interactive' },
  );
  const [alice, bob] = [uniq('alice'), uniq('bob')];
  await register(server, t, [alice, bob]);
  const hostile = await attack(server, t, { addresses: ['127.0.0.2'], names: [bob], ws: 150 });
  await eventually(async () => (await queueLength(server)) >= 100, LONG, '100 hostile attempts queued');
  // From a network that has never failed, a mistake goes ahead of the failing network...
  const mistaken = await from(server, t, '127.0.0.3');
  const before = await hashes(server);
  assert.equal((await login(mistaken, alice)).code, 'bad_credentials');
  const waitedClean = (await hashes(server)) - before;
  // ...and then, failing too, its next attempt takes turns with the hostile one: it waits for
  // about one hostile attempt, not for the 100 queued before it.
  const waited = await realLogin(server, t, alice, '127.0.0.3');
  const queued = await queueLength(server);
  await hostile.stop();
  assert.ok(queued >= 50, `the queue drained (${queued}): no attack to beat`);
  assert.ok(waitedClean <= 5, `the first attempt waited for ${waitedClean} hashes`);
  assert.ok(waited <= 7, `the real user waited for ${waited} hashes`);
});

test('--auth-threads 2: never more than 2 hashes in progress, and 2 do run at once', async (t) => {
  const server = await serverFor(t, ['--auth-threads', '2', '--login-fails-address', '0', '--login-fails-account', '0'], {
    cost: 'interactive',
  });
  // Ten networks, each trying the account it registered (trusted: every hasher may take them).
  const addresses = Array.from({ length: 10 }, (_, i) => `127.0.0.${60 + i}`);
  const names = addresses.map(() => uniq('p'));
  await Promise.all(names.map((name, i) => register(server, t, [name], addresses[i])));
  const hostile = await attack(server, t, { addresses, names, ws: 10, own: true });
  let most = 0;
  const start = await hashes(server);
  await eventually(
    async () => {
      const m = await scrape(server);
      most = Math.max(most, sum(m, 'parley_auth_hashes_in_progress'));
      return sum(m, 'parley_auth_hashes_total') >= start + 20;
    },
    LONG,
    '20 hashes',
  );
  await hostile.stop();
  assert.ok(most <= 2, `${most} hashes in progress`);
  assert.equal(await metric(server, 'parley_auth_hashes_in_progress_max'), 2);
});

test('under attack from fresh networks, a returning user has a hasher to itself; failing ones share the rest', async (t) => {
  const server = await serverFor(t, ['--auth-threads', '2'], { cost: 'interactive' });
  const names = Array.from({ length: 8 }, (_, i) => uniq(`acct${i}_`));
  await Promise.all([register(server, t, names.slice(0, 4)), register(server, t, names.slice(4))]);
  // Registrations, even two at once, are not logins from a trusted network: one hasher for them.
  assert.equal(await metric(server, 'parley_auth_hashes_in_progress_max'), 1);
  const addresses = Array.from({ length: 60 }, (_, i) => `127.0.0.${10 + i}`);
  const hostile = await attack(server, t, { addresses, names, ws: 60 });
  await eventually(async () => (await queueLength(server)) >= 40, LONG, 'hostile attempts queued');
  assert.equal(await metric(server, 'parley_auth_hashes_in_progress_max'), 1, 'fresh and failing networks share one hasher');
  const waited = await realLogin(server, t, names[0], '127.0.0.1');
  await hostile.stop();
  assert.equal(await metric(server, 'parley_auth_hashes_in_progress_max'), 2, 'the returning user had the other');
  assert.ok(waited <= 3, `the real user waited for ${waited} hashes`);
});

test('the login deadline does not count the wait for the hasher; failed attempts still do not extend it', async (t) => {
  const server = await serverFor(
    t,
    // The account throttle would refuse most of the 30 attempts below: off, they all queue.
    ['--auth-threads', '1', '--login-timeout', '0.5', '--telnet-login-timeout', '0.5', '--login-fails-account', '0'],
    { cost: 'interactive' },
  );
  const [alice, carol] = [uniq('alice'), uniq('carol')];
  await register(server, t, [alice, carol]);
  // 30 networks' first attempts fill the queue: seconds of hashing on one thread.
  const addresses = Array.from({ length: 30 }, (_, i) => `127.0.0.${100 + i}`);
  const early = await Promise.all(addresses.map((a) => from(server, t, a)));
  const earlyReplies = early.map((c) => login(c, alice));
  await eventually(async () => (await queueLength(server)) >= 25, LONG, 'the queue filled');
  // Connections opened now: one idle, one failing as fast as it can (no hash: a name without an
  // account), one real login on WebSocket and one on telnet, from networks without failures.
  const events = [];
  const idle = await from(server, t, '127.0.0.3');
  const trying = await from(server, t, '127.0.0.4');
  const real = await from(server, t, '127.0.0.5');
  const retrying = await from(server, t, '127.0.0.8');
  const tel = await TelnetClient.connect(server, 'telnet real user', EVENT_TIMEOUT, { localAddress: '127.0.0.6' });
  t.after(() => tel.destroy());
  const telIdle = await TelnetClient.connect(server, 'telnet idle', EVENT_TIMEOUT, { localAddress: '127.0.0.7' });
  t.after(() => telIdle.destroy());
  idle.closed.then(() => events.push('idle closed'));
  telIdle.closed.then(() => events.push('telnet idle closed'));
  const welcome = login(real, alice, PASSWORD).then((w) => {
    events.push('welcome');
    return w;
  });
  // A mistake that waited past the deadline leaves the connection the rest of its time: enough
  // to try again at once.
  const retried = login(retrying, alice).then(async (failure) => {
    events.push('mistake answered');
    assert.equal(failure.code, 'bad_credentials');
    return login(retrying, alice, PASSWORD);
  });
  await tel.waitPrompt(/name/i);
  await tel.send(`/login ${carol} ${PASSWORD}`);
  const joined = tel.nextLine(new RegExp(`^\\* ${esc(carol)} joined #general`), LONG).then((l) => {
    events.push('telnet joined');
    return l;
  });
  const attempts = (async () => {
    while (trying.isOpen) await login(trying, uniq('nobody')).catch(() => {});
  })();
  const idleClose = await idle.waitClosed(LONG);
  assert.deepEqual(idleClose, { code: 1008, reason: 'login timeout' });
  const tryingClose = await trying.waitClosed(LONG, 'the deadline of the connection that keeps failing');
  await attempts;
  assert.deepEqual(tryingClose, { code: 1008, reason: 'login timeout' });
  await telIdle.waitClosed(LONG);
  assert.ok(telIdle.lines.some((l) => /^\* Login timed out/.test(l.text)));
  // The real logins waited in the queue past their deadlines, and still get in.
  assert.equal((await welcome).type, 'welcome');
  assert.equal((await retried).type, 'welcome');
  await joined;
  assert.ok(events.indexOf('idle closed') < events.indexOf('mistake answered'), events.join(', '));
  assert.ok(events.indexOf('idle closed') < events.indexOf('welcome'), events.join(', '));
  assert.ok(events.indexOf('telnet idle closed') < events.indexOf('telnet joined'), events.join(', '));
  await real.sync();
  assert.ok(real.isOpen, 'logged in, the real user is not closed by the deadline');
  await Promise.all(earlyReplies);
});
