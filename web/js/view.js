// The signed-in page: conversation list, messages, members, typing, composer and status.
// It reads the ChatClient's state and calls its methods; it never speaks the protocol itself.

import { Actions } from './actions.js';
import { Attention } from './attention.js';
import { HISTORY_PAGE, MAX_TEXT, memberOrder, presenceOrder, textLength } from './client.js';
import { $, fill, h } from './dom.js';
import { Mentions } from './mention.js';
import { Search } from './search.js';
import { append, oneLine, prepend, renderAll, renderPending, update } from './messages.js';
import { errorText, roomNameError, userNameError } from './words.js';

const NOTICE_MS = 8000;
const SWITCH_QUIET_MS = 3000; // how long a move to another server may take before it is shown
const WINDOW = 2 * HISTORY_PAGE; // messages rendered when a conversation opens; more on scroll-back
const num = new Intl.NumberFormat();

// The index of the first message whose seq is at least `seq` (the list is in seq order).
function indexOf(list, seq) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class View {
  // The messages rendered: list[first..] of the open conversation, by the seqs at both ends.
  #shown = { id: null, count: 0, firstSeq: 0, lastSeq: 0 };
  #drafts = new Map(); // conversation id -> text typed there and not sent
  #draftFor = null; // the conversation the message box's text belongs to
  #noticeTimer = null;
  #statusTimer = null;
  #switchTimer = null;
  #quietUntil = 0; // no status bar before this, while the page moves to another server
  #sidebarQueued = false;
  #membersQueued = false;
  #reply = null; // the message the next send answers: {conv, seq}

  constructor(client) {
    this.client = client;
    this.log = $('#log');
    this.list = $('#messages');
    this.text = $('#composer-text');
    this.attention = new Attention(client, (id) => this.#open(id));
    this.actions = new Actions(this);
    this.search = new Search(this, (id) => this.#open(id));
    this.mentions = new Mentions(this.text, $('#mention-list'), () => {
      const conv = this.active;
      const me = client.me?.name.toLowerCase();
      return (conv ? (conv.dm ? [conv.peer] : [...conv.members.keys()]) : []).filter((n) => n && n.toLowerCase() !== me);
    });
    this.#bind();
    client.addEventListener('rooms', () => this.#sidebarSoon());
    client.addEventListener('active', () => this.renderActive());
    client.addEventListener('messages', (e) => this.#onMessages(e.detail));
    client.addEventListener('pending', () => this.renderPending());
    client.addEventListener('members', () => this.#membersSoon());
    client.addEventListener('typing', () => this.renderTyping());
    client.addEventListener('topic', (e) => e.detail.conv === this.active && (this.renderTopic(), this.#membersSoon()));
    client.addEventListener('status', (e) => this.renderStatus(e.detail));
    client.addEventListener('loading', (e) => {
      if (e.detail.conv.id === client.active) $('#older').textContent = 'Loading older messages…';
    });
    client.addEventListener('notice', (e) => this.#onNotice(e.detail));
    client.addEventListener('gone', () => {
      if (client.active) return;
      const next = [...client.convs.values()].find((v) => !v.dm && v.joined);
      this.#open(next ? next.id : 'general');
    });
    client.addEventListener('session', () => {
      if (!client.me) {
        this.#drafts.clear();
        this.#draftFor = null;
        this.text.value = '';
        this.#onInput();
      }
      this.renderAccount();
    });
  }

  get active() {
    return this.client.active && this.client.convs.get(this.client.active);
  }

  // --- status ---

  renderStatus({ state, retryAt, switching = false }) {
    const bar = $('#status');
    const retry = $('#retry');
    clearInterval(this.#statusTimer);
    clearTimeout(this.#switchTimer);
    document.body.dataset.conn = state === 'open' && this.client.loggedIn ? 'online' : state;
    // A move to another server after a drop shows nothing for a while: it usually takes less
    // than a second, and the conversation carries on where it was.
    if (switching) this.#quietUntil = Date.now() + SWITCH_QUIET_MS;
    if (state === 'offline' || state === 'idle') this.#quietUntil = 0;
    if (Date.now() < this.#quietUntil && !(state === 'open' && this.client.loggedIn)) {
      bar.hidden = true;
      this.#switchTimer = setTimeout(() => this.renderStatus({ state: this.client.conn.state, retryAt }),
        this.#quietUntil - Date.now());
      return;
    }
    if (!this.client.me && state !== 'connecting') {
      bar.hidden = true;
      return;
    }
    if (state === 'open' && this.client.loggedIn) {
      bar.hidden = true;
      return;
    }
    bar.hidden = false;
    bar.className = 'status ' + state;
    retry.hidden = state !== 'offline';
    if (state === 'offline') {
      const tick = () => {
        const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        $('#status-text').textContent = `Offline. Reconnecting${s > 0 ? ` in ${s} s` : '…'}`;
      };
      tick();
      this.#statusTimer = setInterval(tick, 1000);
    } else {
      $('#status-text').textContent = state === 'open' ? 'Signing in…' : 'Connecting…';
    }
  }

  // --- sidebar ---

  // Many events in a row (a long replay) render the sidebar once.
  #sidebarSoon() {
    if (this.#sidebarQueued) return;
    this.#sidebarQueued = true;
    setTimeout(() => {
      this.#sidebarQueued = false;
      if (this.client.me) this.renderSidebar();
    }, 0);
  }

  // Member changes (a storm of presence, a page of names) render once per animation frame, so
  // they never hold back the messages that arrive among them.
  #membersSoon() {
    if (this.#membersQueued) return;
    this.#membersQueued = true;
    requestAnimationFrame(() => {
      this.#membersQueued = false;
      if (!this.client.me) return;
      if (this.active) this.renderMembers();
      this.renderSidebar();
    });
  }

  renderSidebar() {
    const c = this.client;
    const counts = new Map(c.publicRooms.map((r) => [r.name, r.members]));
    const online = this.#onlineNames();
    const item = (conv, label, extra) => {
      const current = conv.id === c.active;
      const n = conv.unread > 999 ? '999+' : String(conv.unread);
      const badge = conv.unread > 0 ? h('span', { class: 'badge' + (conv.mentions ? ' at' : ''), 'aria-label': `${n} unread` + (conv.mentions ? `, ${conv.mentions} mentioning you` : '') }, (conv.mentions ? '@' : '') + n) : null;
      return h('li', {},
        h('button', {
          type: 'button', class: 'conv-btn' + (current ? ' current' : '') + (conv.unread ? ' unread' : ''),
          'aria-current': current ? 'page' : null, 'data-conv': conv.id,
          onclick: () => this.#open(conv.id),
        }, h('span', { class: 'conv-name' }, label), extra, badge));
    };
    const mine = [...c.convs.values()].filter((v) => !v.dm && v.joined).sort((a, b) => a.id.localeCompare(b.id));
    fill($('#my-rooms'), mine.map((v) => {
      const n = v.members.size || v.large ? v.memberCount : counts.get(v.id) ?? 0;
      return item(v, '#' + v.id, h('span', { class: n ? 'count' : 'count zero', 'aria-label': `${n} online` }, num.format(n)));
    }));
    const dms = [...c.convs.values()].filter((v) => v.dm && (v.messages.length || v.seq !== null || v.id === c.active || v.latest || this.#drafts.get(v.id)));
    fill($('#dm-list'), dms.length ? dms.map((v) => item(v, v.peer, online.has(v.peer && v.peer.toLowerCase()) ? h('span', { class: 'dot online', 'aria-label': 'online' }) : null))
      : h('li', { class: 'empty' }, 'No conversations yet'));
    const others = c.publicRooms.filter((r) => !(c.convs.get(r.name) || {}).joined);
    fill($('#other-rooms'), others.length ? others.map((r) => h('li', {},
      h('button', { type: 'button', class: 'conv-btn', 'data-conv': r.name, onclick: () => this.#open(r.name) },
        h('span', { class: 'conv-name' }, '#' + r.name),
        h('span', { class: r.members ? 'count' : 'count zero', 'aria-label': `${r.members} online` }, num.format(r.members)))))
      : h('li', { class: 'empty' }, 'None'));
    $('#rooms-more').hidden = !c.roomsMore;
    let unread = 0;
    let elsewhere = 0;
    for (const v of c.convs.values()) {
      unread += v.unread;
      if (v.id !== c.active) elsewhere += v.unread;
    }
    document.title = unread ? `(${unread}) parley` : 'parley';
    // On a phone the list is behind the menu button: it shows that another conversation has news.
    const nav = $('#nav-toggle');
    nav.classList.toggle('has-unread', elsewhere > 0);
    nav.setAttribute('aria-label', elsewhere ? `Conversations (${elsewhere} unread)` : 'Conversations');
  }

  renderAccount() {
    const me = this.client.me;
    $('#me').textContent = me ? me.name + (me.guest ? ' (guest)' : '') : '';
    $('.me-narrow').textContent = me ? `Signed in as ${$('#me').textContent}` : '';
    const away = this.client.state === 'away';
    $('#away-btn').textContent = away ? 'Back' : 'Away';
    $('#away-text').value = this.client.statusText;
    $('#away-text').disabled = away;
    $('#join-form label').textContent = me?.guest ? 'Join a room' : 'Join or create a room';
    const box = $('#account');
    if (!me || !me.guest) {
      fill(box);
      return;
    }
    const err = h('p', { class: 'error', role: 'alert' });
    const pw = h('input', { id: 'keep-password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 256 });
    fill(box, h('form', {
      class: 'inline-form', novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        if (pw.value.length < 8) {
          err.textContent = 'Passwords are at least 8 characters.';
          return;
        }
        try {
          await this.client.registerName(pw.value);
        } catch (ex) {
          err.textContent = errorText(ex.code, ex.message);
        }
      },
    }, h('label', { for: 'keep-password' }, `Keep the name ${me.name}: choose a password`),
    h('div', { class: 'row' }, pw, h('button', { type: 'submit' }, 'Register')), err));
  }

  // Lower-cased names shown online in any room.
  #onlineNames() {
    const names = new Set();
    for (const conv of this.client.convs.values()) {
      for (const [user, state] of conv.members) if (state === 'online') names.add(user.toLowerCase());
    }
    return names;
  }

  #peerOnline(name) {
    return Boolean(name) && this.#onlineNames().has(name.toLowerCase());
  }

  async #open(id) {
    document.body.classList.remove('nav-open', 'members-open');
    $('#scrim').hidden = true;
    try {
      await this.client.open(id);
    } catch (err) {
      this.#onNotice({ code: err.code, message: err.message });
      return err;
    } finally {
      this.text.focus();
    }
  }

  // --- the open conversation ---

  renderActive() {
    const conv = this.active;
    if (!conv) return;
    $('#conv-title').textContent = conv.title;
    for (const b of document.querySelectorAll('[data-action="leave"]')) b.textContent = `${conv.dm ? 'Close' : 'Leave'} ${conv.title}`;
    // One draft per conversation: what was typed elsewhere stays there.
    if (this.#draftFor !== conv.id) {
      if (this.#draftFor) this.#drafts.set(this.#draftFor, this.text.value);
      this.text.value = this.#drafts.get(conv.id) || '';
      this.#draftFor = conv.id;
      this.#onInput();
    }
    $('#composer-label').textContent = `Message ${conv.title}`;
    this.text.placeholder = `Message ${conv.title}`;
    $('#notice').hidden = true;
    this.actions.reset();
    this.#renderReply();
    this.renderMessages(true);
    this.renderMembers();
    this.renderTyping();
    this.renderPending();
    this.renderSidebar();
    this.renderTopic();
  }

  // The room's topic above its messages; ops, the owner and admins may change it.
  renderTopic(editing = false) {
    const conv = this.active;
    const may = !conv.dm && conv.role !== 'member';
    const input = $('#topic-text');
    $('#topic-bar').hidden = conv.dm || (!conv.topic && !may);
    $('#topic').textContent = conv.topic;
    $('#topic').hidden = editing;
    input.hidden = !editing;
    $('#topic-edit').hidden = !may || editing;
    $('#topic-edit').textContent = conv.topic ? 'Edit topic' : 'Set a topic';
    // Muted: the composer says so.
    const muted = conv.muted != null && (!conv.muted || conv.muted > Date.now());
    this.text.disabled = muted;
    this.text.placeholder = muted ? `You are muted in ${conv.title}` : `Message ${conv.title}`;
    if (editing) {
      input.value = conv.topic;
      input.focus();
    }
  }

  renderMessages(toBottom) {
    const conv = this.active;
    const fromBottom = this.log.scrollHeight - this.log.scrollTop;
    const list = conv.messages;
    const from = Math.max(0, list.length - WINDOW);
    const focused = document.activeElement;
    renderAll(this.list, list, from, this.#ctx());
    this.actions.place(focused);
    this.#shown = { id: conv.id, count: list.length - from, firstSeq: list.length ? list[from].seq : 0, lastSeq: list.length ? list.at(-1).seq : 0 };
    this.#olderText();
    $('#jump').hidden = true;
    if (toBottom) this.log.scrollTop = this.log.scrollHeight;
    else this.log.scrollTop = this.log.scrollHeight - fromBottom;
    this.#maybeLoadOlder();
  }

  // Where the rendered messages start in the list (its length when none are).
  #firstShown(list) {
    return this.#shown.count ? indexOf(list, this.#shown.firstSeq) : list.length;
  }

  #olderText() {
    const conv = this.active;
    const list = conv.messages;
    const guest = this.client.me && this.client.me.guest;
    $('#older').textContent = conv.loading ? 'Loading older messages…'
      : conv.hasMore || this.#firstShown(list) > 0 ? ''
        : conv.dm && guest && conv.seq !== null && !(list.length && list[0].seq === 1)
          ? 'Direct messages of guests are not kept: earlier ones in this conversation cannot be shown. Register your name to keep them.'
          : list.length ? 'This is the beginning of the conversation.' : 'No messages yet. Say hello!';
  }

  // New messages at the end are appended, a page of older ones put in front (neither touches
  // what is shown); anything else renders the window again.
  #onMessages({ conv, reset, older, changed }) {
    if (conv.id !== this.client.active) return;
    if (changed) {
      this.redraw(changed);
      return;
    }
    const shown = this.#shown;
    const list = conv.messages;
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    const first = this.#firstShown(list);
    const last = first + shown.count - 1;
    if (reset || shown.id !== conv.id || !shown.count || list[first]?.seq !== shown.firstSeq || list[last]?.seq !== shown.lastSeq) {
      this.renderMessages(atBottom && !reset);
      return;
    }
    if (older && first > 0) this.#prepend(first);
    if (older) {
      // Quotes of messages that were not loaded yet: some may be now.
      for (const q of this.list.querySelectorAll('.quote.unknown')) {
        const m = conv.bySeq.get(+q.dataset.replyTo);
        if (m) this.redraw(m);
      }
    }
    const me = this.client.me.name;
    if (last + 1 < list.length) {
      for (let i = last + 1; i < list.length; i++) append(this.list, list[i - 1], list[i], this.#ctx());
      shown.count += list.length - last - 1;
      shown.lastSeq = list.at(-1).seq;
      if (atBottom || list.at(-1).from === me) this.log.scrollTop = this.log.scrollHeight;
      else $('#jump').hidden = false;
    }
    this.#olderText();
  }

  // Shows the messages before the first shown one (up to `first`, a page of them at most when
  // they were loaded before), keeping the view where it is.
  #prepend(first, page = Infinity) {
    const list = this.active.messages;
    const from = Math.max(0, first - page);
    const top = this.log.scrollTop;
    const height = this.log.scrollHeight;
    prepend(this.list, list, from, first, this.#ctx());
    this.#shown.count += first - from;
    this.#shown.firstSeq = list[from].seq;
    // Kept in place here, not by the browser's scroll anchoring (off: it costs more per page).
    this.log.scrollTop = top + this.log.scrollHeight - height;
  }

  #maybeLoadOlder() {
    const conv = this.active;
    if (!conv || this.log.scrollTop >= 150) return;
    const first = this.#firstShown(conv.messages);
    if (first > 0 && this.#shown.id === conv.id) {
      this.#prepend(first, HISTORY_PAGE);
      this.#olderText();
    } else if (conv.hasMore && !conv.loading) {
      this.client.loadOlder(conv).catch((err) => this.#onNotice({ code: err.code }));
    }
  }

  #ctx() {
    return { me: this.client.me?.name, conv: this.active };
  }

  // Draws message `m` again where it is shown, and the replies quoting it.
  redraw(m) {
    const focused = document.activeElement;
    update(this.list, m, this.#ctx());
    this.actions.place(focused);
    this.#renderReply();
  }

  // Shows message `seq` of the open conversation (loading older pages until it is there),
  // scrolled into view and marked.
  async jumpTo(seq) {
    const conv = this.active;
    const m = await this.client.loadUntil(conv, seq).catch(() => null);
    if (!m || conv !== this.active) {
      if (!m) this.#onNotice({ code: 'not_found' });
      return;
    }
    const first = this.#firstShown(conv.messages);
    const i = indexOf(conv.messages, seq);
    if (i < first) this.#prepend(first, first - i);
    this.list.querySelector('.msg.target')?.classList.remove('target');
    const li = this.list.querySelector(`li.msg[data-seq="${seq}"]`);
    if (!li) return;
    li.classList.add('target');
    li.scrollIntoView({ block: 'center' });
    li.focus({ preventScroll: true });
  }

  startReply(m) {
    this.#reply = { conv: this.client.active, seq: m.seq };
    this.#renderReply();
    this.text.focus();
  }

  #renderReply() {
    const r = this.#reply;
    const m = r && r.conv === this.client.active && this.active.bySeq.get(r.seq);
    $('#reply-bar').hidden = !m;
    if (m) $('#reply-text').textContent = `Replying to ${m.deleted ? 'a deleted message' : oneLine(m)}`;
  }

  #cancelReply() {
    this.#reply = null;
    this.#renderReply();
  }

  renderPending() {
    const conv = this.active;
    if (!conv) return;
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    const mine = this.client.pending.filter((p) => p.conv === conv.id);
    renderPending($('#pending'), mine, this.#ctx(), (cid) => this.client.discard(cid));
    if (atBottom || mine.length) this.log.scrollTop = this.log.scrollHeight;
  }

  renderMembers() {
    const conv = this.active;
    const pane = $('#members-pane');
    const me = this.client.me.name;
    const foot = $('#members-foot');
    // A button of the list about to be hidden keeps the keyboard focus in the pane.
    const focused = document.activeElement;
    if ((!conv.large && foot.contains(focused)) || (!conv.membersMore && focused === $('#members-more'))) pane.focus();
    if (conv.dm) {
      foot.hidden = true;
      pane.classList.remove('large');
      const online = this.#peerOnline(conv.peer);
      $('#conv-sub').textContent = online ? 'online' : '';
      $('#members-h').textContent = 'Direct message';
      fill($('#members'), h('li', { class: 'member' },
        h('span', { class: 'dot' + (online ? ' online' : ''), 'aria-hidden': 'true' }),
        h('span', {}, conv.peer), h('span', { class: 'sr-only' }, online ? ' (online)' : ' (offline or elsewhere)')));
      pane.classList.add('dm');
      return;
    }
    pane.classList.remove('dm');
    pane.classList.toggle('large', conv.large);
    const n = conv.memberCount;
    let entries;
    if (conv.large) {
      // The server's order (you first, then by name), so each page adds names at the end.
      entries = [...conv.members].sort(([a], [b]) => (a === me ? -1 : b === me ? 1 : memberOrder(a, b)));
      $('#members-h').textContent = `Members (${num.format(n)})`;
      $('#conv-sub').textContent = `${num.format(n)} ${n === 1 ? 'member' : 'members'}`;
    } else {
      entries = [...conv.members].sort(presenceOrder);
      $('#members-h').textContent = `Members (${num.format(n)} online)`;
      $('#conv-sub').textContent = `${num.format(n)} online`;
    }
    fill($('#members'), entries.map(([name, state]) => h('li', { class: 'member ' + state, 'data-user': name },
      h('span', { class: 'dot' + (state === 'offline' ? '' : ' ' + state), 'aria-hidden': 'true' }),
      name !== me && conv.role !== 'member' ? h('select', { 'aria-label': `Moderate ${name}`, class: 'mod', onchange: (e) => this.#moderate(name, e.target) },
        ...['…', 'Kick', 'Ban 1 hour', 'Ban 1 day', 'Ban', 'Unban', 'Mute 10 min', 'Mute 1 day', 'Unmute', 'Make op', 'Remove op', 'Make owner']
          .filter((t) => (conv.role !== 'op' || !/op$/.test(t)) && (t !== 'Make owner' || conv.role === 'admin')).map((t) => h('option', {}, t))) : null,
      name === me ? h('span', {}, name, h('span', { class: 'you' }, ' (you)'))
        : h('button', { type: 'button', class: 'link member-name', title: `Send ${name} a direct message`, onclick: () => this.#openDm(name) }, name),
      // A large room's list is not live: it does not claim who is online, only who is away.
      conv.large && state === 'online' ? null
        : h('span', { class: 'presence' }, state === 'away' ? ['away', this.client.away.get(name.toLowerCase())].filter(Boolean).join(': ') : state === 'online' ? state : 'offline'))));
    foot.hidden = !conv.large;
    if (!conv.large) return;
    $('#members-note').textContent = `Showing ${num.format(conv.members.size)} of ${num.format(n)}. `
      + 'In a room this large the list is not updated live.';
    // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    const more = $('#members-more');
    more.hidden = !conv.membersMore;
    more.setAttribute('aria-disabled', String(conv.membersLoading));
    more.textContent = conv.membersLoading ? 'Loading members…' : 'Show more members';
    $('#members-refresh').setAttribute('aria-disabled', String(conv.membersLoading));
  }

  #loadMembers(opts) {
    const conv = this.active;
    if (!conv || conv.dm) return;
    this.client.loadMembers(conv, opts).catch((err) => this.#onNotice({ conv, code: err.code, message: err.message }));
  }

  // A moderator's choice from a member's menu; kick and ban ask for a reason. A banned member
  // stays listed as offline, so the menu can lift a ban as well as a mute. Only an admin may
  // make someone the owner (the owner before becomes an op).
  async #moderate(user, select) {
    const [verb, n, unit] = select.value.split(' ');
    select.selectedIndex = 0;
    const extra = {};
    if (unit) extra.duration = n * { min: 60, hour: 3600, day: 86400 }[unit];
    if (verb === 'Make' || verb === 'Remove') extra.role = verb === 'Remove' ? 'member' : n; // op or owner
    const reason = /Kick|Ban/.test(verb) && prompt(`${verb} ${user}: reason?`);
    if (reason) extra.reason = reason;
    const type = extra.role ? 'role' : verb.toLowerCase();
    try {
      await this.client.moderate(this.active, type, user, extra);
    } catch (err) {
      this.#onNotice({ code: err.code, message: err.message });
    }
  }

  renderTyping() {
    const conv = this.active;
    const names = conv ? [...conv.typing.keys()] : [];
    $('#typing').textContent = names.length === 0 ? ''
      : names.length === 1 ? `${names[0]} is typing…`
        : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : 'Several people are typing…';
  }

  #onNotice({ conv, code, message, text }) {
    const el = $('#notice');
    let words = errorText(code, message);
    if (conv && conv.id !== this.client.active) words = `${conv.title}: ${words}`;
    el.textContent = words;
    el.hidden = false;
    el.className = 'notice ' + (code === 'rate_limited' || code === 'server_busy' ? 'warn' : 'error');
    // A refused text comes back to its own conversation's draft.
    if (text && conv && conv.id !== this.#draftFor) {
      if (!this.#drafts.get(conv.id)) this.#drafts.set(conv.id, text);
    } else if (text && !this.text.value) {
      this.text.value = text;
      this.#onInput();
    }
    clearTimeout(this.#noticeTimer);
    this.#noticeTimer = setTimeout(() => { el.hidden = true; }, NOTICE_MS);
  }

  #openDm(name) {
    document.body.classList.remove('nav-open', 'members-open');
    $('#scrim').hidden = true;
    this.client.openDm(name);
    this.renderSidebar();
    this.text.focus();
  }

  // --- controls ---

  #bind() {
    const c = this.client;
    let stuck = true; // at the bottom: stays there when the log gets shorter (a banner, a keyboard)
    this.log.addEventListener('scroll', () => {
      this.#maybeLoadOlder();
      stuck = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
      if (stuck) $('#jump').hidden = true;
    }, { passive: true });
    new ResizeObserver(() => {
      if (stuck) this.log.scrollTop = this.log.scrollHeight;
    }).observe(this.log);
    $('#jump').addEventListener('click', () => {
      this.log.scrollTop = this.log.scrollHeight;
      $('#jump').hidden = true;
      this.text.focus();
    });
    $('#composer').addEventListener('submit', (e) => {
      e.preventDefault();
      this.#send();
    });
    this.text.addEventListener('keydown', (e) => {
      if (this.mentions.key(e)) return;
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.#send();
      } else if (e.key === 'Escape' && !$('#reply-bar').hidden) {
        this.#cancelReply();
      } else if (e.key === 'ArrowUp' && !this.text.value && this.active) {
        // As in other chats: the up arrow in an empty box edits your last message here.
        const me = c.me.name.toLowerCase();
        const m = this.active.messages.findLast((x) => x.from.toLowerCase() === me && !x.deleted && !x.event);
        if (m && this.list.querySelector(`li.msg[data-seq="${m.seq}"]`)) {
          e.preventDefault();
          this.actions.edit(m);
        }
      }
    });
    $('#reply-cancel').addEventListener('click', () => {
      this.#cancelReply();
      this.text.focus();
    });
    this.text.addEventListener('input', () => {
      this.#onInput();
      if (this.text.value.trim() && this.#draftFor) c.typing(this.#draftFor);
    });
    let roomsAsked = 0;
    const freshRooms = () => {
      if (Date.now() - roomsAsked < 1000) return;
      roomsAsked = Date.now();
      c.refreshRooms();
    };
    $('#join-name').addEventListener('focus', freshRooms);
    window.addEventListener('focus', freshRooms);
    $('#join-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const input = $('#join-name');
      const name = input.value.trim().toLowerCase().replace(/^#/, '');
      const problem = roomNameError(name);
      $('#join-error').textContent = problem || '';
      if (problem) return;
      input.value = '';
      const err = await this.#open(name);
      if (err) $('#join-error').textContent = errorText(err.code, err.message);
    });
    $('#dm-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('#dm-name');
      const name = input.value.trim().replace(/^@/, '');
      let problem = userNameError(name);
      if (!problem && name.toLowerCase() === c.me.name.toLowerCase()) problem = 'That is you. Pick someone else.';
      $('#dm-error').textContent = problem || '';
      if (problem) return;
      input.value = '';
      this.#openDm(name);
    });
    const leave = async () => {
      const id = c.active;
      try {
        await c.leave(id);
      } catch (err) {
        this.#onNotice({ code: err.code, message: err.message });
        return;
      }
      this.#drafts.delete(id);
      if (this.#draftFor === id) {
        this.#draftFor = null;
        this.text.value = '';
      }
      const next = [...c.convs.values()].find((v) => !v.dm && v.joined);
      this.#open(next ? next.id : 'general');
    };
    for (const b of document.querySelectorAll('[data-action="leave"]')) b.addEventListener('click', leave);
    $('#retry').addEventListener('click', () => c.conn.retryNow());
    $('#members-more').addEventListener('click', () => this.#loadMembers());
    $('#members-refresh').addEventListener('click', () => this.#loadMembers({ fresh: true }));
    $('#rooms-more').addEventListener('click', () => c.moreRooms());
    $('#status-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const away = c.state !== 'away';
      c.setStatus(away ? 'away' : 'online', away && $('#away-text').value.trim()).catch((err) => this.#onNotice({ code: err.code, message: err.message }));
    });
    $('#topic-edit').addEventListener('click', () => this.renderTopic(true));
    $('#topic-text').addEventListener('keydown', (e) => e.key === 'Escape' && this.renderTopic());
    $('#topic-bar').addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        await c.setTopic(this.active, $('#topic-text').value);
        this.renderTopic();
      } catch (err) {
        this.#onNotice({ code: err.code, message: err.message });
      }
    });
    const drawer = (cls, button) => {
      const open = !document.body.classList.contains(cls);
      document.body.classList.remove('nav-open', 'members-open');
      if (open) document.body.classList.add(cls);
      $('#nav-toggle').setAttribute('aria-expanded', String(cls === 'nav-open' && open));
      $('#members-toggle').setAttribute('aria-expanded', String(cls === 'members-open' && open));
      $('#scrim').hidden = !open;
      if (open) (button === 'nav' ? $('#join-name') : $('#members-pane')).focus();
    };
    $('#nav-toggle').addEventListener('click', () => drawer('nav-open', 'nav'));
    $('#members-toggle').addEventListener('click', () => drawer('members-open', 'members'));
    $('#scrim').addEventListener('click', () => {
      document.body.classList.remove('nav-open', 'members-open');
      $('#scrim').hidden = true;
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && document.body.matches('.nav-open, .members-open')) {
        document.body.classList.remove('nav-open', 'members-open');
        $('#scrim').hidden = true;
        this.text.focus();
      }
    });
  }

  #send() {
    const c = this.client;
    const text = this.text.value;
    const id = this.#draftFor;
    if (!text.trim() || !id || id !== c.active) return;
    const reply = this.#reply && this.#reply.conv === id && !$('#reply-bar').hidden ? this.#reply.seq : undefined;
    try {
      c.send(id, text, reply);
    } catch (err) {
      this.#onNotice({ code: err.code });
      return;
    }
    this.text.value = '';
    this.#drafts.delete(id);
    this.#onInput();
    if (reply) this.#cancelReply();
    $('#notice').hidden = true;
  }

  // The box fits its text; near the limit a counter shows the length as the server counts it,
  // and over it the send button says why it is off.
  #onInput() {
    // Sized by CSS where it can (field-sizing): measuring here would lay out the whole page per key.
    if (!CSS.supports('field-sizing', 'content')) {
      this.text.style.height = 'auto';
      this.text.style.height = Math.min(this.text.scrollHeight, 200) + 'px';
    }
    const n = this.text.value.length > MAX_TEXT * 0.9 ? textLength(this.text.value) : 0;
    const over = n > MAX_TEXT;
    const counter = $('#counter');
    if (!n && counter.hidden) return; // nothing to change: touching nothing keeps a key cheap
    counter.hidden = n <= MAX_TEXT * 0.9;
    counter.classList.toggle('over', over);
    counter.textContent = over ? `${num.format(n)} / ${num.format(MAX_TEXT)}: too long to send, ${num.format(n - MAX_TEXT)} over`
      : `${num.format(n)} / ${num.format(MAX_TEXT)}`;
    const button = $('#send');
    button.disabled = over;
    button.title = over ? `Messages are at most ${num.format(MAX_TEXT)} characters: shorten this one to send it.` : '';
  }
}
