// login_attack: how long a real user's password login takes while hostile clients try wrong
// passwords as fast as they are answered, beside the same login on the idle server, in one run.
//   node bench/login_attack.mjs [rounds]                          (default 5)
//   BASELINE_BIN=path/to/parley node bench/login_attack.mjs       (adds the rows of another build)
// For each build and scenario a fresh server (default options: interactive argon2id cost) gets
// the real user and 7 other accounts, registered from 127.0.0.1. Scenarios:
//   - idle: nobody else logs in;
//   - one address: 140 WebSocket and 10 telnet connections from 127.0.0.2;
//   - 150 addresses: the same connections, one each from 127.0.0.10 .. 127.0.0.159;
// the hostile connections try the 8 accounts in turn with wrong passwords, each sending its next
// attempt as soon as the last is answered, and connecting again when closed. After 3 s of attack, the real user logs in `rounds`
// times from 127.0.0.1, each on a new connection, one after the other. Reported: the median and
// the longest of those logins, their ratio to the idle median, the hostile attempts answered per
// second, and the server's peak resident memory (VmHWM).
import { readFileSync, rmSync } from 'node:fs';
import { ChatClient } from '../tests/chat/lib/chat.mjs';
import { TelnetClient } from '../tests/chat/lib/telnet.mjs';
import { startParley } from './lib.mjs';

const rounds = Number(process.argv[2] ?? 5);
const PASSWORD = 'correct-horse-9';
const LOGIN_CAP_MS = 35000; // past the 30 s login deadline: a login that never comes
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function peakRss(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function open(server, localAddress) {
  return ChatClient.connect(server, { localAddress, label: localAddress, timeoutMs: 20000 });
}

// The real user's login: ms until welcome, or a description of what came instead.
async function realLogin(server, name) {
  const c = await open(server, '127.0.0.1');
  const t0 = performance.now();
  try {
    const reply = await c.request({ type: 'login', name, password: PASSWORD }, { timeoutMs: LOGIN_CAP_MS });
    const took = performance.now() - t0;
    if (reply.type !== 'welcome') return { failed: `${reply.code} after ${(took / 1000).toFixed(1)} s` };
    return { ms: took };
  } catch {
    const info = c.closeInfo;
    const took = ((performance.now() - t0) / 1000).toFixed(1);
    return { failed: info ? `closed ${info.code} ${info.reason} after ${took} s` : `no answer in ${took} s` };
  } finally {
    c.terminate();
  }
}

// The hostile connections; each opens a new connection when the server closes its own (the old
// server's login deadline would otherwise end the attack after 30 s).
async function attack(server, addresses, names) {
  const stats = { answers: 0 };
  let stopped = false;
  const live = new Set();
  const wsRun = async (i) => {
    const localAddress = addresses[i % addresses.length];
    for (let k = i; !stopped; ) {
      let c;
      try {
        c = await open(server, localAddress);
      } catch {
        continue;
      }
      live.add(c);
      for (; !stopped && c.isOpen; k++) {
        try {
          await c.request({ type: 'login', name: names[k % names.length], password: `wrong-${k}-pw` }, { timeoutMs: 120000 });
        } catch {
          break;
        }
        c.log.length = 0;
        stats.answers += 1;
      }
      c.terminate();
      live.delete(c);
    }
  };
  const telnetRun = async (i) => {
    const localAddress = addresses[i % addresses.length];
    for (let k = i; !stopped; ) {
      let c;
      try {
        c = await TelnetClient.connect(server, 'hostile', 20000, { localAddress });
        live.add(c);
        await c.waitPrompt(/name/i, 20000);
        for (; !stopped; k++) {
          await c.send(`/login ${names[k % names.length]} wrong-${k}-pw`);
          await c.nextLine(/^! /, 120000);
          await c.waitPrompt(/name/i, 120000);
          c.discardLines();
          c.raw.length = 0;
          c.lines.length = 0;
          stats.answers += 1;
        }
      } catch {
        // closed: open another
      }
      c?.destroy();
      live.delete(c);
    }
  };
  const runs = [...Array.from({ length: 140 }, (_, i) => wsRun(i)), ...Array.from({ length: 10 }, (_, i) => telnetRun(i))];
  return {
    stats,
    async stop() {
      stopped = true;
      for (const c of live) (c.terminate ?? c.destroy).call(c);
      await Promise.all(runs);
    },
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function scenario(bin, label, addresses) {
  const proc = await startParley({ bin });
  const server = { wsUrl: `ws://127.0.0.1:${proc.port}/ws`, telnetPort: proc.telnetPort };
  try {
    const names = Array.from({ length: 8 }, (_, i) => `bench_user${i}`);
    const reg = await open(server, '127.0.0.1');
    for (const name of names) await reg.request({ type: 'register', name, password: PASSWORD }, { timeoutMs: 20000 });
    reg.terminate();
    const hostile = addresses ? await attack(server, addresses, names) : null;
    if (hostile) await sleep(3000);
    const answered0 = hostile?.stats.answers ?? 0;
    const t0 = performance.now();
    const logins = [];
    for (let i = 0; i < rounds; i++) logins.push(await realLogin(server, names[0]));
    const rate = hostile ? (hostile.stats.answers - answered0) / ((performance.now() - t0) / 1000) : 0;
    const rss = peakRss(proc.proc.pid);
    await hostile?.stop();
    return { label, logins, rate, rss };
  } finally {
    proc.proc.kill('SIGKILL');
    rmSync(proc.data, { recursive: true, force: true });
  }
}

async function build(name, bin) {
  const rows = [];
  rows.push(await scenario(bin, 'idle', null));
  rows.push(await scenario(bin, 'one address', ['127.0.0.2']));
  rows.push(await scenario(bin, '150 addresses', Array.from({ length: 150 }, (_, i) => `127.0.0.${10 + i}`)));
  const idle = median(rows[0].logins.map((l) => l.ms));
  for (const r of rows) {
    const ok = r.logins.filter((l) => l.ms !== undefined).map((l) => l.ms);
    const failed = r.logins.filter((l) => l.failed).map((l) => l.failed);
    const med = ok.length === r.logins.length ? median(ok) : NaN;
    console.log(
      [
        name.padEnd(9),
        r.label.padEnd(14),
        `login median ${Number.isNaN(med) ? '  -' : med.toFixed(0).padStart(5)} ms`,
        `max ${ok.length ? Math.max(...ok).toFixed(0).padStart(5) : '  -'} ms`,
        `ratio to idle ${Number.isNaN(med) ? '  -' : (med / idle).toFixed(2)}x`,
        `hostile answers ${r.rate.toFixed(0).padStart(6)}/s`,
        `peak RSS ${(r.rss / 1048576).toFixed(0)} MiB`,
        failed.length ? `failed ${failed.length}/${r.logins.length}: ${failed.join('; ')}` : '',
        `each: ${r.logins.map((l) => (l.ms !== undefined ? `${(l.ms / 1000).toFixed(2)} s` : 'failed')).join(', ')}`,
      ].join('  '),
    );
  }
}

await build('parley', undefined);
if (process.env.BASELINE_BIN) await build('baseline', process.env.BASELINE_BIN);
process.exit(0);
