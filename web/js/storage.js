// What the page remembers between visits, in localStorage: the last name used, a login token per
// name, and per name the rooms joined with the last seq seen in each, plus sends not yet acked.

const KEY = 'parley.v1';

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || { last: null, users: {} };
  } catch {
    return { last: null, users: {} };
  }
}

function save(data) {
  try {
    localStorage.setItem(KEY, JSON.stringify(data));
  } catch {
    // Storage full or disabled: the page still works, it just forgets on reload.
  }
}

export function lastSession() {
  const data = load();
  const user = data.last && data.users[data.last.toLowerCase()];
  return user && user.token ? { name: user.name, token: user.token } : null;
}

export function userState(name) {
  const user = load().users[name.toLowerCase()] || {};
  return { rooms: user.rooms || {}, active: user.active || null, pending: user.pending || [] };
}

// Merges `fields` into the record kept for `name` (token, rooms, active, pending).
export function saveUser(name, fields) {
  const data = load();
  const key = name.toLowerCase();
  data.users[key] = { ...(data.users[key] || {}), name, ...fields };
  data.last = name;
  save(data);
}

export function forgetToken(name) {
  const data = load();
  const user = data.users[name.toLowerCase()];
  if (user) delete user.token;
  if (data.last && data.last.toLowerCase() === name.toLowerCase()) data.last = null;
  save(data);
}
