// Real-browser helpers for the web client tests: Debian's chromium driven by playwright-core,
// one context per person, console errors collected, and polling waits (no fixed sleeps).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { repoRoot } from '../../blackbox/lib/server.mjs';
import { ms } from '../../blackbox/lib/util.mjs';

export const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium';
export const WAIT = ms(10000);
export const SCREENSHOTS = path.join(repoRoot, 'tests', 'screenshots');

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

// Network failures Chromium itself logs while the server is deliberately down.
const NETWORK_NOISE = /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|ERR_INTERNET_DISCONNECTED|ERR_NETWORK_CHANGED/;

// A person: a browser context and one page at the server, with its console errors recorded.
// beforeLoad(page) runs before the page is opened (to route its WebSocket, for instance).
// With server.tls set (a TLS server), the page is loaded over https:// and trusts the test's
// self-signed certificate.
// `touch`: a phone's touch screen (taps, no hover).
export async function person(browser, server, { viewport = { width: 1100, height: 720 }, colorScheme = 'light', beforeLoad, touch = false } = {}) {
  const context = await browser.newContext({
    viewport,
    colorScheme,
    hasTouch: touch,
    isMobile: touch,
    baseURL: `${server.tls ? 'https' : 'http'}://127.0.0.1:${server.httpPort}`,
    ignoreHTTPSErrors: Boolean(server.tls),
  });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const p = { context, page, errors: [], networkNoiseAllowed: false, dialogs: [] };
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (p.networkNoiseAllowed && NETWORK_NOISE.test(m.text())) return;
    p.errors.push(m.text());
  });
  page.on('pageerror', (err) => p.errors.push(`pageerror: ${err.message}`));
  page.on('dialog', (d) => {
    p.dialogs.push(d.message());
    (p.answer != null ? d.accept(p.answer) : d.dismiss()).catch(() => {}); // p.answer: a test's reply to a prompt
  });
  if (beforeLoad) await beforeLoad(page);
  await page.goto('/');
  return p;
}

// Polls `fn` until it returns a truthy value; fails with `what` (and the last value) on timeout.
export async function until(fn, what, timeoutMs = WAIT) {
  const end = Date.now() + timeoutMs;
  let last;
  let delay = 20;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

export async function signIn(page, name, mode = 'guest', password = '') {
  await page.getByLabel('Name', { exact: true }).fill(name);
  if (password) await page.locator('#signin-password').fill(password);
  const button = { guest: 'Join as guest', login: 'Sign in', register: 'Create account' }[mode];
  await page.getByRole('button', { name: button }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  await online(page);
}

// Waits until the page is connected and signed in.
export async function online(page) {
  await page.locator('body[data-conn="online"]').waitFor({ state: 'attached' });
}

export async function say(page, text) {
  const box = page.locator('#composer-text');
  await box.fill(text);
  await box.press('Enter');
}

// Texts of the messages shown (acked ones, not pending), in order.
export function texts(page) {
  return page.locator('#messages .msg .msg-text').allTextContents();
}

// How many times `text` is shown as a message.
export async function countOf(page, text) {
  return (await texts(page)).filter((t) => t === text).length;
}

export async function waitMessage(page, text) {
  await until(async () => (await countOf(page, text)) >= 1, `message ${JSON.stringify(text)}`);
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}
