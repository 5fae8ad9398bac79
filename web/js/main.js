// Starts the page: the sign-in form, or straight into the chat when a session token is stored.

import { ChatClient } from './client.js';
import { $ } from './dom.js';
import { View } from './view.js';
import { errorText, signInErrorText, userNameError } from './words.js';

// This page's server first, then the other nodes it names (--peer-urls), tried in turn when a
// connection fails.
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
const client = new ChatClient([url]);
const view = new View(client);
fetch('/peers.json', { cache: 'no-store' })
  .then((r) => (r.ok ? r.json() : { urls: [] }))
  .then((peers) => client.conn.addUrls(Array.isArray(peers.urls) ? peers.urls : []))
  .catch(() => {}); // an older server, or this one already gone: its own URL is enough

function show(signedIn) {
  $('#signin').hidden = signedIn;
  $('#app').hidden = !signedIn;
  document.body.classList.toggle('signed-in', signedIn);
}

client.addEventListener('session', (e) => {
  if (client.me) {
    show(true);
    return;
  }
  show(false);
  $('#signin-error').textContent = e.detail.reason ? errorText(e.detail.reason) : '';
  $('#signin-name').focus();
});

// Enter in the password field means "Sign in", not the form's first button (guest).
$('#signin-password').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && $('#signin-password').value) {
    e.preventDefault();
    $('#login-btn').click();
  }
});

for (const b of document.querySelectorAll('[data-action="signout"]')) b.addEventListener('click', () => client.signOut());

let busy = false;
$('#signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (busy) return;
  const mode = (e.submitter && e.submitter.value) || 'guest';
  const name = $('#signin-name').value.trim();
  const password = $('#signin-password').value;
  const error = $('#signin-error');
  let problem = userNameError(name);
  if (!problem && mode !== 'guest' && !password) problem = 'Enter your password, or join as a guest.';
  if (!problem && mode === 'register' && password.length < 8) problem = 'Choose a password of at least 8 characters.';
  error.textContent = problem || '';
  if (problem) return;
  busy = true;
  error.textContent = '';
  const buttons = $('#signin-form').querySelectorAll('button');
  for (const b of buttons) b.disabled = true;
  try {
    await client.signIn(mode, name, password);
    $('#signin-password').value = '';
    view.text.focus();
  } catch (err) {
    error.textContent = signInErrorText(err.code, err.message);
  } finally {
    busy = false;
    for (const b of buttons) b.disabled = false;
  }
});

if (client.start()) {
  show(true);
  view.renderAccount();
} else {
  show(false);
  $('#signin-name').focus();
}
window.addEventListener('pagehide', () => client.saveNow());
