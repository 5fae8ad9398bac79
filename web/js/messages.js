// Renders a conversation's messages: grouped by sender, with local times and day dividers,
// pending sends after them. Text goes in as text nodes only.

import { h } from './dom.js';
import { day, fullTime, time } from './words.js';

const GROUP_GAP_MS = 5 * 60 * 1000;
const STATES = {
  sending: 'Sending…',
  waiting: 'Not sent yet: waiting for the connection',
  retry: 'Not sent yet: trying again in a moment',
};

function sameGroup(prev, m) {
  return prev && prev.from === m.from && m.ts - prev.ts < GROUP_GAP_MS && day(prev.ts) === day(m.ts);
}

function messageItem(m, me) {
  return h('li', { class: 'msg' + (m.from === me ? ' mine' : ''), 'data-seq': m.seq },
    h('span', { class: 'sr-only' }, `${m.from}: `),
    h('time', { class: 'msg-time', datetime: new Date(m.ts).toISOString(), title: fullTime(m.ts) }, time(m.ts)),
    h('p', { class: 'msg-text' }, m.text));
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

// Renders all of `messages` into `ol`.
export function renderAll(ol, messages, me) {
  const items = [];
  let prev = null;
  let group = null;
  for (const m of messages) {
    if (!prev || day(prev.ts) !== day(m.ts)) items.push(divider(m.ts));
    if (!sameGroup(prev, m)) {
      group = groupItem(m, me);
      items.push(group.li);
    }
    group.list.append(messageItem(m, me));
    prev = m;
  }
  ol.replaceChildren(...items);
}

// Appends `m` (newer than everything shown, whose last message is `prev`).
export function append(ol, prev, m, me) {
  if (!prev || day(prev.ts) !== day(m.ts)) ol.append(divider(m.ts));
  let last = ol.lastElementChild;
  if (!sameGroup(prev, m) || !last || !last.classList.contains('group')) {
    const group = groupItem(m, me);
    ol.append(group.li);
    last = group.li;
  }
  last.querySelector('.group-msgs').append(messageItem(m, me));
}

export function renderPending(ol, pending, me, onDiscard) {
  ol.replaceChildren(...pending.map((p) => h('li', { class: 'msg pending', 'data-cid': p.cid },
    h('span', { class: 'sender' }, me),
    h('p', { class: 'msg-text' }, p.text),
    h('span', { class: 'pending-state' }, STATES[p.state] || STATES.waiting),
    p.state === 'sending' ? null : h('button', { type: 'button', class: 'link', onclick: () => onDiscard(p.cid) }, 'Discard'))));
}
