// Renders a conversation's messages: grouped by sender, with local times and day dividers, a
// quiet line for each topic and moderation event among them, pending sends after them. Text goes
// in as text nodes only.

import { h } from './dom.js';
import { day, fullTime, time } from './words.js';

const GROUP_GAP_MS = 5 * 60 * 1000;
const STATES = {
  sending: 'Sending…',
  waiting: 'Not sent yet: waiting for the connection',
  retry: 'Not sent yet: trying again in a moment',
  queued: 'Not sent yet: waiting for the message before it',
};

// An event line between two messages ends the group.
function sameGroup(prev, m) {
  return prev && !prev.event && !m.event && prev.from === m.from && m.ts - prev.ts < GROUP_GAP_MS && day(prev.ts) === day(m.ts);
}

// A message whose text starts with "/me " is an action, shown as "* alice waves" (a client
// convention, see docs/protocol.md).
export const isAction = (text) => /^\/me \S/.test(text);

// Inline marks, first match wins: `code`, an http(s) link, **bold**, *italic*.
const INLINE = /(`[^`\n]+`)|(https?:\/\/[^\s<>]+)|(?<![\w*])\*\*([^*\n]+)\*\*(?![\w*])|(?<![\w*])\*([^*\s](?:[^*\n]*[^*\s])?)\*(?![\w*])/gi;
const FENCE = /```(?:[^\n`]*\n)?([\s\S]*?)```/g;

function link(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return h('a', { href: url.href, rel: 'noopener noreferrer', target: '_blank' }, text);
}

function inline(text) {
  const out = [];
  let at = 0;
  for (const m of text.matchAll(INLINE)) {
    let [all, code, url, bold, em] = m;
    let end = m.index + all.length;
    let node;
    if (code) node = h('code', {}, code.slice(1, -1));
    else if (url) {
      // Punctuation after a link ends the sentence, not the link (a ")" that closes a "(" in it stays).
      let n = url.length;
      const count = (c) => url.slice(0, n).split(c).length;
      while (n && `.,;:!?'")]`.includes(url[n - 1]) && !(url[n - 1] === ')' && count('(') >= count(')'))) n--;
      end -= url.length - n;
      node = link(url.slice(0, n));
    } else node = bold ? h('strong', {}, bold) : h('em', {}, em);
    if (!node) continue;
    out.push(text.slice(at, m.index), node);
    at = end;
  }
  out.push(text.slice(at));
  return out;
}

// A message's text as nodes: fenced code blocks, then inline marks. Only text nodes and a few
// fixed elements: nothing the sender writes becomes HTML.
export function rich(text) {
  const out = [];
  let at = 0;
  for (const m of text.matchAll(FENCE)) {
    // The line breaks around a block are the block's own edges, not blank lines.
    out.push(...inline(text.slice(at, m.index).replace(/\n$/, '')), h('pre', { class: 'code' }, h('code', {}, m[1].replace(/\n$/, ''))));
    at = m.index + m[0].length + (text[m.index + m[0].length] === '\n' ? 1 : 0);
  }
  out.push(...inline(text.slice(at)));
  return out;
}

// The text of a message as shown: rich text, an action with the sender's name in front.
export function textItem(text, from) {
  const action = isAction(text);
  return h('div', { class: action ? 'msg-text action' : 'msg-text', dir: 'auto' },
    action ? [`* ${from} `, ...rich(text.slice(4))] : rich(text));
}

// A message in one line: "alice: its first line", or "* alice waves".
export function oneLine(m) {
  const line = m.text.split('\n')[0];
  return isAction(line) ? `* ${m.from} ${line.slice(4)}` : `${m.from}: ${line}`;
}

// A reply's quote of the message it answers (its sender and first line, when loaded here): a
// button that shows that message.
function quoteItem(m, conv) {
  const q = conv.bySeq.get(m.reply_to);
  const what = !q ? 'an earlier message' : q.deleted ? 'a deleted message' : oneLine(q);
  return h('button', { type: 'button', class: q ? 'quote' : 'quote unknown', dir: 'auto', 'data-reply-to': m.reply_to, title: 'Show the message this answers' }, `↪ ${what}`);
}

// Who holds a reaction, for its title: the server names the first 20.
export function holders(r) {
  const names = r.users || [];
  return names.join(', ') + (r.count > names.length ? ` and ${r.count - names.length} more` : '');
}

// Reactions: buttons with the emoji and how many hold it, who in the title; a press toggles yours.
function reactionsItem(m) {
  return h('ul', { class: 'reactions' }, m.reactions.map((r) => h('li', {},
    h('button', {
      type: 'button', class: r.me ? 'reaction me' : 'reaction', title: holders(r), 'data-emoji': r.emoji, 'aria-pressed': String(!!r.me),
      'aria-label': `${r.emoji} ${r.count}: ${holders(r)}. ${r.me ? 'Take back your reaction' : 'React with it too'}`,
    }, `${r.emoji} ${r.count}`))));
}

const timeItem = (ts) => h('time', { class: 'msg-time', datetime: new Date(ts).toISOString(), title: fullTime(ts) }, time(ts));

// ctx: {me, conv} (the user's name, the conversation shown).
function messageItem(m, ctx) {
  const { me, conv } = ctx;
  const body = m.deleted
    ? h('div', { class: 'msg-text deleted' }, 'message deleted')
    : textItem(m.text, m.from);
  const named = m.from !== me && m.mentions?.some((n) => n.toLowerCase() === me?.toLowerCase());
  return h('li', { class: 'msg' + (m.from === me ? ' mine' : '') + (named ? ' mention' : ''), 'data-seq': m.seq, tabindex: -1 },
    h('span', { class: 'sr-only' }, `${m.from}: `),
    timeItem(m.ts),
    m.reply_to && !m.deleted ? quoteItem(m, conv) : null,
    body,
    m.edited && !m.deleted ? h('span', { class: 'edited', title: fullTime(m.edited) }, '(edited)') : null,
    m.reactions?.length > 0 && !m.deleted ? reactionsItem(m) : null);
}

// A ban's or mute's length as said in a line: whole days or hours, else minutes rounded up.
function lasting(s) {
  const [n, unit] = s % 86400 ? s % 3600 ? [Math.ceil(s / 60), 'min'] : [s / 3600, 'h'] : [s / 86400, s > 86400 ? 'days' : 'day'];
  return ` for ${n} ${unit}`;
}

// A topic or moderation event as a line of its own: "alice banned bob for 1 h (spam)". The topic
// and a reason are the user's own text (either direction); names are ASCII.
function eventItem(m) {
  const own = (text) => h('span', { dir: 'auto' }, text);
  const why = m.reason ? [' (', own(m.reason), ')'] : [];
  const { from, user } = m;
  const words = {
    topic: m.text ? [`${from} set the topic: `, own(m.text)] : [`${from} cleared the topic`],
    role: [`${from} made ${user} ${m.role === 'op' ? 'an op' : m.role === 'owner' ? 'the owner' : 'a member'}`],
    kick: [`${from} removed ${user}`, ...why],
    ban: [`${from} banned ${user}${m.duration ? lasting(m.duration) : ''}`, ...why],
    unban: [`${from} unbanned ${user}`],
    mute: [`${from} muted ${user}${m.duration ? lasting(m.duration) : ''}`],
    unmute: [`${from} unmuted ${user}`],
  }[m.event];
  return h('li', { class: 'sys', 'data-seq': m.seq },
    timeItem(m.ts),
    h('span', { class: 'sys-text' }, words));
}

// Redraws one message where `ol` shows it (an edit, a delete or a reaction changed it), and the
// replies that quote it.
export function update(ol, m, ctx) {
  const li = ol.querySelector(`li.msg[data-seq="${m.seq}"]`);
  if (li) li.replaceWith(messageItem(m, ctx));
  for (const q of ol.querySelectorAll(`.quote[data-reply-to="${m.seq}"]`)) {
    const reply = q.closest('.msg');
    const r = ctx.conv.bySeq.get(+reply.dataset.seq);
    if (r) reply.replaceWith(messageItem(r, ctx));
  }
}

function groupItem(m, me) {
  const list = h('ol', { class: 'group-msgs' });
  const li = h('li', { class: 'group' + (m.from === me ? ' mine' : '') },
    h('div', { class: 'group-head' },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }, m.from.charAt(0).toUpperCase()),
      h('span', { class: 'sender' }, m.from)),
    list);
  li.dataset.from = m.from;
  return { li, list };
}

function divider(ts) {
  return h('li', { class: 'day', role: 'separator' }, h('span', {}, day(ts)));
}

// Whether the read marker's line goes before messages[i]: the first message after the marker
// when the conversation was opened (event lines are no messages: they stay above it).
function newLine(messages, i, conv) {
  const mark = conv?.marker;
  if (mark == null || messages[i].seq <= mark) return false;
  let j = i - 1;
  while (j >= 0 && messages[j].event && messages[j].seq > mark) j--;
  return j >= 0 ? messages[j].seq <= mark : !conv.hasMore;
}

// The items (day dividers, groups, event lines) showing messages[from..to).
function items(messages, from, to, ctx) {
  const out = [];
  let group = null;
  for (let i = from; i < to; i++) {
    const m = messages[i];
    const prev = i > from ? messages[i - 1] : null;
    if (!prev || day(prev.ts) !== day(m.ts)) out.push(divider(m.ts));
    if (m.event) {
      out.push(eventItem(m));
      continue;
    }
    const line = newLine(messages, i, ctx.conv);
    if (line) out.push(h('li', { class: 'new-line', role: 'separator' }, 'New messages'));
    if (line || !sameGroup(prev, m)) {
      group = groupItem(m, ctx.me);
      out.push(group.li);
    }
    group.list.append(messageItem(m, ctx));
  }
  return out;
}

// Renders messages[from..] into `ol`, replacing what it showed.
export function renderAll(ol, messages, from, ctx) {
  ol.replaceChildren(...items(messages, from, messages.length, ctx));
}

// Adds messages[from..to) before what `ol` shows (which starts at messages[to]), leaving the
// shown items in place: the first group shown takes the new last one's messages when they
// belong together.
export function prepend(ol, messages, from, to, ctx) {
  const added = items(messages, from, to, ctx);
  if (!added.length) return;
  const next = messages[to];
  const last = messages[to - 1];
  const head = ol.firstElementChild;
  if (next && head && head.classList.contains('day') && day(next.ts) === day(last.ts)) {
    head.remove();
    const first = ol.firstElementChild;
    if (first && sameGroup(last, next)) {
      // The new messages go into the shown group (never the other way: it may hold thousands).
      first.querySelector('.group-msgs').prepend(...added.pop().querySelector('.group-msgs').children);
    }
  }
  ol.prepend(...added);
}

// Appends `m` (newer than everything shown, whose last message is `prev`).
export function append(ol, prev, m, ctx) {
  if (!prev || day(prev.ts) !== day(m.ts)) ol.append(divider(m.ts));
  if (m.event) {
    ol.append(eventItem(m));
    return;
  }
  let last = ol.lastElementChild;
  if (!sameGroup(prev, m) || !last || !last.classList.contains('group')) {
    const group = groupItem(m, ctx.me);
    ol.append(group.li);
    last = group.li;
  }
  last.querySelector('.group-msgs').append(messageItem(m, ctx));
}

export function renderPending(ol, pending, ctx, onDiscard) {
  const { me } = ctx;
  ol.replaceChildren(...pending.map((p) => h('li', { class: 'msg pending', 'data-cid': p.cid },
    h('span', { class: 'sender' }, me),
    p.reply_to ? quoteItem(p, ctx.conv) : null,
    textItem(p.text, me),
    h('span', { class: 'pending-state' }, STATES[p.state] || STATES.waiting),
    p.state === 'sending' ? null : h('button', { type: 'button', class: 'link', onclick: () => onDiscard(p.cid) }, 'Discard'))));
}
