// Error codes and states in words a person can act on.

const ERRORS = {
  bad_credentials: 'That name and password do not match.',
  name_taken: 'That name is taken right now. Pick another, or sign in with its password.',
  bad_name: 'Names use letters, digits, _ - and . (1 to 32 characters).',
  bad_token: 'Your session has ended. Please sign in again.',
  rate_limited: 'You are sending too quickly. Your message will go out in a moment.',
  too_long: 'That message is too long: at most 4000 characters.',
  not_member: 'You are not in that room. Join it again to send there.',
  forbidden: 'That conversation is private.',
  no_such_user: 'There is no one by that name online or registered.',
  no_such_room: 'There is no room by that name. Guests join rooms that exist; sign in to create one.',
  too_many_rooms: 'You are in as many rooms as allowed. Leave one first.',
  server_busy: 'The server is busy. Your message will be retried.',
  already_logged_in: 'You are already signed in.',
  disconnected: 'Not connected to the server. Try again in a moment.',
  timeout: 'The server did not answer in time. Try again.',
  edit_window: 'This message is too old to edit now.',
  not_found: 'That message is no longer there.',
  too_many_reactions: 'This message has as many different reactions as it can take.',
  truncated: 'Some messages from while you were away are no longer kept and could not be shown.',
};

// A refused sign-in or registration: the server's words say why and how long to wait.
export function signInErrorText(code, serverMessage) {
  if (code === 'rate_limited' && serverMessage) {
    return serverMessage.charAt(0).toUpperCase() + serverMessage.slice(1) + '.';
  }
  return errorText(code, serverMessage);
}

export function errorText(code, serverMessage) {
  if (ERRORS[code]) return ERRORS[code];
  if (serverMessage) return serverMessage.charAt(0).toUpperCase() + serverMessage.slice(1).replace(/\.?$/, '.');
  return 'Something went wrong. Please try again.';
}

export function roomNameError(name) {
  return /^[a-z0-9_-]{1,32}$/.test(name) ? null : 'Room names use a-z, 0-9, _ and - (1 to 32 characters).';
}

export function userNameError(name) {
  return /^[A-Za-z0-9_.-]{1,32}$/.test(name) ? null : ERRORS.bad_name;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

export const time = (ts) => timeFmt.format(ts);
export const fullTime = (ts) => fullFmt.format(ts);

export function day(ts) {
  const d = new Date(ts);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return 'Today';
  today.setDate(today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Yesterday';
  return dayFmt.format(d);
}
