// The chat session over a Connection: sign-in, the conversations (rooms and direct messages) with
// their messages in seq order, members, typing, sends with client ids, and resume after a drop
// (log in with the token, re-join every room with `since`, retry unacked sends with their cid).
// Large rooms (more users than the server's presence limit) come with a cut member list, no
// presence and no typing, and a `count` event when their size changes: their list is a snapshot
// the view pages through with `who`. It emits events for the view and never touches the page.

import { Connection, RequestError } from './connection.js';
import * as storage from './storage.js';

export const HISTORY_PAGE = 50;
export const MAX_TEXT = 4000;
const TYPING_SHOWN_MS = 5000;
const TYPING_EVERY_MS = 2000;
const TYPING_PASSED_MS = 1100; // the server passes on one typing event a second per connection
const ROOMS_REFRESH_MS = 20000;
const RETRY_SOON_MS = 1500;
export const MEMBERS_PAGE = 100; // names per `who` page in a large room (as many as `joined` lists)
const ROOMS_PAGE = 200; // rooms per `rooms` page (the server's most)
const STATE_RANK = { online: 0, away: 1, offline: 2 };
// Topic and moderation events: each is a line of the conversation, among its messages.
const LINE_EVENTS = new Set(['topic', 'role', 'kick', 'ban', 'unban', 'mute', 'unmute']);
// A room joined with nothing of it loaded replays this many seqs before what it has seen: `history`
// holds only messages, so the event lines of the latest page come from the replay.
const REPLAY_BACK = 2 * HISTORY_PAGE;

// Byte order of lower-cased names: the order of the server's member pages (names are ASCII).
export function memberOrder(a, b) {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

// Small rooms list who is here first, then who is away, then who left; by name within each.
export function presenceOrder([a, sa], [b, sb]) {
  return (STATE_RANK[sa] ?? 2) - (STATE_RANK[sb] ?? 2) || a.localeCompare(b);
}

export function dmId(a, b) {
  return 'dm:' + [a.toLowerCase(), b.toLowerCase()].sort().join(':');
}

// The Unicode White_Space set the server trims from the end of a text before counting it.
const TRAILING_SPACE = /[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/u;

export const trimText = (text) => text.replace(TRAILING_SPACE, '');

// A text's length as the server counts it: code points after trailing white space is trimmed.
export const textLength = (text) => [...trimText(text)].length;

// Whether a message names `me`: its `mentions` list when the server sends one, else an @name in
// the text (not inside a longer name or an address).
export function mentions(msg, me) {
  if (Array.isArray(msg.mentions)) return msg.mentions.some((n) => n.toLowerCase() === me.toLowerCase());
  const name = me.replace(/\./g, '\\.');
  return new RegExp(`(^|[^\\w.@-])@${name}(?![\\w-]|\\.[\\w-])`, 'i').test(msg.text);
}

// Applies an edit, delete or reaction event to the message it targets (a replayed event of a
// deleted message comes with "deleted" and without its text or emoji).
export function applyEvent(m, ev, me) {
  if (ev.deleted || ev.type === 'delete') {
    Object.assign(m, { deleted: true, text: '', mentions: undefined, reactions: [] });
  } else if (ev.type === 'edit' && typeof ev.text === 'string') {
    Object.assign(m, { text: ev.text, mentions: ev.mentions, edited: ev.ts });
  } else if (ev.type === 'edit') {
    m.edited = ev.ts; // a replayed edit: the message came with its current text already
  } else if (ev.type === 'reaction' && typeof ev.emoji === 'string') {
    const users = (r) => r.users || [];
    let r = m.reactions.find((x) => x.emoji === ev.emoji);
    const held = r && users(r).some((u) => u.toLowerCase() === ev.from.toLowerCase());
    if (ev.on !== false && !held) {
      if (!r) m.reactions.push((r = { emoji: ev.emoji, count: 0, me: false, users: [] }));
      r.count += 1;
      r.users = [...users(r), ev.from];
      if (me && ev.from.toLowerCase() === me.toLowerCase()) r.me = true;
    } else if (ev.on === false && r && (held || r.count > users(r).length)) {
      r.count = Math.max(0, r.count - 1);
      r.users = users(r).filter((u) => u.toLowerCase() !== ev.from.toLowerCase());
      if (me && ev.from.toLowerCase() === me.toLowerCase()) r.me = false;
      if (!r.count) m.reactions = m.reactions.filter((x) => x !== r);
    }
  }
}

function newCid() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class Conversation {
  constructor(id, me) {
    this.id = id;
    this.dm = id.startsWith('dm:');
    this.peer = null;
    if (this.dm && me) {
      const [, a, b] = id.split(':');
      this.peer = a === me.toLowerCase() ? b : a;
    }
    this.joined = false; // a public room this tab is in (or wants to be in)
    this.seq = null; // last seq seen on the live stream (null: none yet)
    this.latest = 0; // latest seq the server reported
    this.members = new Map(); // name -> 'online' | 'away' | 'offline'
    // A large room: no presence or typing; `count` says how many are in it, `members` lists the
    // names loaded so far (a snapshot), more of them after `membersAfter` while `membersMore`.
    this.large = false;
    this.count = 0;
    this.membersMore = false;
    this.membersAfter = '';
    this.membersLoading = false;
    this.messages = []; // in seq order
    this.bySeq = new Map();
    this.hasMore = true;
    this.loading = false;
    this.unread = 0;
    this.mentions = 0;
    this.read = null; // the server's read marker (registered users)
    this.counted = 0; // seqs up to this are in the server's counts
    this.gapAfter = null; // a replay's first seq above this one is messages lost to retention
    this.marker = null; // where the "new messages" line goes
    this.topic = '';
    this.role = 'member'; // this user's: member, op, owner, admin
    this.stateSeq = 0; // topic, roles and mute are as the last `joined` said at this seq
    this.owner = ''; // the room's owner, lower-cased ('' for none)
    this.typing = new Map(); // name -> timer
    this.missing = false; // a direct message to a name the server does not know: never kept
  }

  get title() {
    return this.dm ? this.peer : '#' + this.id;
  }

  // Users in the room: the server's count in a large room, else those in the live list.
  get memberCount() {
    if (this.large) return this.count;
    let n = 0;
    for (const state of this.members.values()) if (state !== 'offline') n++;
    return n;
  }
}

// The last name of a server member list, lower-cased: where the next `who` page starts. A list of
// the requester alone (listed first, out of order) starts at the beginning.
function cursorOf(names) {
  return names.length > 1 ? names.at(-1).toLowerCase() : '';
}

export class ChatClient extends EventTarget {
  #resumeGen = 0;
  #saveTimer = null;
  #typingSent = 0;
  #roomsTimer = null;
  #welcomed = false; // the first welcome of this page shows the open conversation
  #roomsQueue = Promise.resolve(); // `rooms` requests one after another, so pages never mix
  #pumping = false; // the send queue is being worked through
  #rejoining = false; // after a login, until every room is joined again: sends wait
  #ackedAt = 0; // when the last send of ours was acked
  #typingDue = null; // a room typed in while its send was not acked yet
  #typingTimer = null;

  // urls: the servers' WebSocket URLs in the order to try them (the nodes of one chat).
  constructor(urls) {
    super();
    this.conn = new Connection(urls);
    this.me = null; // {name, guest}
    this.token = null;
    this.loggedIn = false;
    this.convs = new Map();
    this.publicRooms = []; // from the last `rooms` replies, in name order
    this.roomsMore = false; // more public rooms after the last one listed
    this.pending = []; // sends not yet acked: {cid, conv, text, state, error}
    this.active = null;
    this.state = 'online'; // this user's status, with its text
    this.statusText = '';
    this.away = new Map(); // lower-cased name -> status text of the users shown
    this.conn.addEventListener('state', (e) => this.#onState(e.detail));
    this.conn.addEventListener('message', (e) => this.#onEvent(e.detail));
    // Unread counts in the open conversation too while the tab is hidden, until it is seen.
    document.addEventListener('visibilitychange', () => {
      const conv = !document.hidden && this.convs.get(this.active);
      if (conv) this.markRead(conv);
    });
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // Page load: resume the last session if a token is stored. Returns whether it did.
  start() {
    const last = storage.lastSession();
    if (!last) return false;
    this.me = { name: last.name, guest: null };
    this.token = last.token;
    this.#restore(last.name);
    this.conn.open();
    return true;
  }

  async signIn(mode, name, password) {
    this.conn.open();
    try {
      let timer;
      await Promise.race([
        this.conn.ready(),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new RequestError('disconnected')), 10000); }),
      ]).finally(() => clearTimeout(timer));
      if (mode === 'register') {
        await this.conn.request({ type: 'register', name, password });
      }
      const msg = { type: 'login', name };
      if (mode !== 'guest') msg.password = password;
      const welcome = await this.conn.request(msg);
      this.#restore(welcome.name);
      this.#welcome(welcome);
    } catch (err) {
      if (!this.loggedIn) this.conn.close();
      throw err;
    }
  }

  // A guest keeps its name by registering it.
  async registerName(password) {
    const reply = await this.conn.request({ type: 'register', name: this.me.name, password });
    this.me = { name: reply.name, guest: false };
    if (reply.token) {
      this.token = reply.token;
      storage.saveUser(this.me.name, { token: reply.token });
    }
    this.emit('session');
  }

  signOut(reason = null) {
    this.#resumeGen++;
    this.conn.close();
    if (this.me) storage.forgetToken(this.me.name);
    clearInterval(this.#roomsTimer);
    for (const conv of this.convs.values()) for (const t of conv.typing.values()) clearTimeout(t);
    this.me = null;
    this.token = null;
    this.loggedIn = false;
    this.convs = new Map();
    this.pending = [];
    this.active = null;
    this.publicRooms = [];
    this.roomsMore = false;
    this.#welcomed = false;
    this.emit('session', { reason });
  }

  // --- conversations ---

  conv(id) {
    let conv = this.convs.get(id);
    if (!conv) {
      conv = new Conversation(id, this.me && this.me.name);
      this.convs.set(id, conv);
    }
    return conv;
  }

  // Shows a conversation: joins (or creates) a public room, loads recent history.
  async open(id) {
    const conv = this.conv(id);
    this.active = id;
    conv.marker = conv.unread && conv.read !== null ? conv.read : null;
    this.markRead(conv);
    this.#save();
    this.emit('active', { conv });
    this.emit('rooms');
    if (!conv.dm && !conv.joined) {
      conv.joined = true;
      if (!this.loggedIn) {
        this.emit('rooms'); // joined with every other room once signed in again
        return;
      }
      try {
        await this.#join(conv);
      } catch (err) {
        if (err.code === 'disconnected') {
          this.emit('rooms'); // joined with every other room once the connection is back
          this.#save();
          return;
        }
        conv.joined = false;
        this.convs.delete(id);
        if (this.active === id) this.active = null;
        this.emit('rooms');
        throw err;
      }
      this.refreshRooms();
    } else if (conv.messages.length < HISTORY_PAGE && conv.hasMore) {
      this.loadOlder(conv).catch(() => {});
    }
  }

  openDm(name) {
    const conv = this.conv(dmId(this.me.name, name));
    if (!conv.peer || conv.peer === conv.peer.toLowerCase()) conv.peer = name;
    return this.open(conv.id);
  }

  async leave(id) {
    const conv = this.convs.get(id);
    if (!conv) return;
    if (!conv.dm && conv.joined) await this.conn.request({ type: 'leave', room: id }).catch((err) => {
      if (err.code !== 'not_member') throw err;
    });
    this.#drop(id);
    this.refreshRooms();
  }

  #drop(id) {
    this.convs.delete(id);
    this.pending = this.pending.filter((p) => p.conv !== id);
    if (this.active === id) this.active = null;
    this.#save();
    this.emit('rooms');
  }

  // The open conversation is seen: its counts clear, and its marker moves (every device's),
  // written at most once a second.
  markRead(conv) {
    if (this.active !== conv.id || document.hidden) return;
    const send = this.me?.guest === false && this.loggedIn && conv.latest > (conv.read ?? 0) && (conv.dm || conv.joined);
    if (conv.unread || conv.mentions) this.#readTo(conv, conv.latest);
    if (!send) return;
    conv.read = conv.latest;
    conv.readTimer ||= setTimeout(() => {
      conv.readTimer = 0;
      this.conn.request({ type: 'read', room: conv.id, seq: conv.read }).catch(() => {});
    }, 1000);
  }

  // Counts again from the marker: what is loaded after it.
  #readTo(conv, seq) {
    conv.read = Math.max(conv.read ?? 0, seq);
    const others = conv.messages.filter((m) => m.seq > conv.read && !m.event && !m.deleted && m.from.toLowerCase() !== this.me.name.toLowerCase());
    if (seq >= conv.latest || !conv.hasMore || conv.messages[0]?.seq <= seq) {
      conv.unread = others.length;
      conv.mentions = others.filter((m) => mentions(m, this.me.name)).length;
    }
    this.emit('rooms');
  }

  // The public rooms again: as many pages as are shown (at least one).
  refreshRooms() {
    return this.#roomsStep(async () => {
      if (!this.conn.features.has('large_rooms')) {
        const reply = await this.conn.request({ type: 'rooms' });
        return { rooms: reply.rooms, more: false };
      }
      const want = Math.max(ROOMS_PAGE, this.publicRooms.length);
      const rooms = [];
      let more = true;
      while (more && rooms.length < want) {
        const page = await this.#roomsPage(rooms.length ? rooms.at(-1).name : null);
        rooms.push(...page.rooms);
        more = page.more;
      }
      return { rooms, more };
    });
  }

  // The next page of public rooms, after the last one listed.
  moreRooms() {
    return this.#roomsStep(async () => {
      if (!this.roomsMore) return null;
      const page = await this.#roomsPage(this.publicRooms.length ? this.publicRooms.at(-1).name : null);
      return { rooms: [...this.publicRooms, ...page.rooms], more: page.more };
    });
  }

  async #roomsPage(after) {
    const msg = { type: 'rooms', limit: ROOMS_PAGE };
    if (after !== null) msg.after = after;
    const reply = await this.conn.request(msg);
    return { rooms: reply.rooms, more: reply.more === true && reply.rooms.length > 0 };
  }

  #roomsStep(fetch) {
    const step = this.#roomsQueue.then(async () => {
      if (!this.loggedIn) return;
      let got;
      try {
        got = await fetch();
      } catch {
        return; // offline: the next resume refreshes it
      }
      if (!got) return;
      this.publicRooms = got.rooms;
      this.roomsMore = got.more;
      for (const r of got.rooms) {
        const conv = this.convs.get(r.name);
        if (conv) conv.latest = Math.max(conv.latest, r.seq);
      }
      this.emit('rooms');
    });
    this.#roomsQueue = step;
    return step;
  }

  // --- members ---

  // Loads the next page of a room's members (`all`: every page left). `fresh` starts again from
  // the first name and replaces the list once that page is in (a large room's list is a snapshot).
  async loadMembers(conv, { all = false, fresh = false } = {}) {
    if (conv.membersLoading || (!conv.membersMore && !fresh) || !this.loggedIn || conv.dm) return;
    conv.membersLoading = true;
    this.emit('members', { conv });
    let after = fresh ? '' : conv.membersAfter;
    try {
      for (;;) {
        const reply = await this.conn.request({ type: 'who', room: conv.id, after, limit: MEMBERS_PAGE });
        if (this.convs.get(conv.id) !== conv || !conv.joined) return;
        if (fresh) {
          this.#setMembers(conv, reply.members, reply.away, reply.status_text);
          if (conv.large && this.me) conv.members.set(this.me.name, conv.members.get(this.me.name) || 'online');
          fresh = false;
        } else {
          this.#mergeMembers(conv, reply.members, reply.away);
        }
        if (conv.large && typeof reply.member_count === 'number') conv.count = reply.member_count;
        conv.membersMore = reply.more === true && reply.members.length > 0;
        if (reply.members.length) after = reply.members.at(-1).toLowerCase();
        conv.membersAfter = after;
        if (!all || !conv.membersMore) break;
      }
    } catch (err) {
      if (err.code !== 'disconnected' && err.code !== 'timeout') {
        conv.membersMore = false;
        throw err;
      }
    } finally {
      conv.membersLoading = false;
      this.emit('members', { conv });
    }
  }

  // A server list (joined, members) becomes the room's list; `away` names those away.
  #setMembers(conv, names, away, texts) {
    for (const [n, t] of Object.entries(texts || {})) this.away.set(n.toLowerCase(), t);
    const awaySet = new Set(Array.isArray(away) ? away : []);
    conv.members = new Map(names.map((name) => [name, awaySet.has(name) ? 'away' : 'online']));
  }

  // Adds the names of a later page not listed yet: a presence event since then knows better.
  #mergeMembers(conv, names, away) {
    const awaySet = new Set(Array.isArray(away) ? away : []);
    for (const name of names) if (!conv.members.has(name)) conv.members.set(name, awaySet.has(name) ? 'away' : 'online');
  }

  // The room grew large: its list stops being live (no presence), and nobody is typing there.
  #becameLarge(conv) {
    conv.large = true;
    let last = '';
    for (const [name, state] of conv.members) {
      if (state === 'offline') conv.members.delete(name);
      else if (name.toLowerCase() > last) last = name.toLowerCase();
    }
    conv.membersAfter = last;
    conv.membersMore = false; // complete when it stopped being live; the view offers a refresh
    this.#clearTyping(conv);
  }

  #clearTyping(conv) {
    if (!conv.typing.size) return;
    for (const t of conv.typing.values()) clearTimeout(t);
    conv.typing.clear();
    this.emit('typing', { conv });
  }

  // Loads the page of history before the oldest message shown.
  async loadOlder(conv) {
    if (conv.loading || !conv.hasMore || !this.loggedIn) return;
    const msg = { type: 'history', room: conv.id, limit: HISTORY_PAGE };
    if (conv.messages.length) msg.before = conv.messages[0].seq;
    else if (conv.latest) msg.before = conv.latest + 1;
    if (msg.before === 1) {
      conv.hasMore = false;
      this.emit('messages', { conv, older: true });
      return;
    }
    conv.loading = true;
    this.emit('loading', { conv });
    try {
      const reply = await this.conn.request(msg);
      for (const m of reply.messages) this.#insert(conv, m);
      if (reply.messages.length < HISTORY_PAGE || reply.messages[0].seq <= 1) conv.hasMore = false;
    } catch (err) {
      if (err.code === 'forbidden' || err.code === 'not_member') conv.hasMore = false;
      else if (err.code !== 'disconnected') throw err;
    } finally {
      conv.loading = false;
      this.emit('messages', { conv, older: true });
    }
  }

  // --- sending ---

  // `replyTo`: the seq of the message this one answers.
  send(id, text, replyTo) {
    const trimmed = trimText(text);
    if (!trimmed) return;
    if (textLength(trimmed) > MAX_TEXT) throw new RequestError('too_long');
    const p = { cid: newCid(), conv: id, text: trimmed, reply_to: replyTo, state: this.loggedIn ? 'queued' : 'waiting', error: null };
    this.pending.push(p);
    this.#savePending();
    this.emit('pending', { conv: this.conv(id) });
    this.#pump();
  }

  // Timeline requests on a message of `conv` (the server's event changes it for every page).
  edit(conv, seq, text) {
    return this.conn.request({ type: 'edit', room: conv.id, seq, text: trimText(text) });
  }

  remove(conv, seq) {
    return this.conn.request({ type: 'delete', room: conv.id, seq });
  }

  setStatus(state, text) {
    return this.conn.request({ type: 'status', state, text: text || undefined }).then((r) => this.#onEvent(r));
  }

  moderate(conv, type, user, extra) {
    return this.conn.request({ type, room: conv.id, user, ...extra });
  }

  setTopic(conv, text) {
    return this.conn.request({ type: 'topic', room: conv.id, text: trimText(text) });
  }

  react(conv, seq, emoji, on) {
    return this.conn.request({ type: 'react', room: conv.id, seq, emoji, on });
  }

  // Loads older pages until message `seq` is here (or the room's start). Returns it, if found.
  async loadUntil(conv, seq) {
    while (!conv.bySeq.has(seq) && conv.hasMore && this.loggedIn) {
      if (conv.loading) await new Promise((r) => this.addEventListener('messages', r, { once: true }));
      else await this.loadOlder(conv);
    }
    return conv.bySeq.get(seq);
  }

  discard(cid) {
    const p = this.pending.find((x) => x.cid === cid);
    this.pending = this.pending.filter((x) => x.cid !== cid);
    this.#savePending();
    if (p) this.emit('pending', { conv: this.conv(p.conv) });
  }

  // Tells the room the user is typing, at most every 2 s; sooner after a send of theirs (their
  // message ends the "typing" others see), and only once it is acked, so the event reaches
  // others after the message. The server passes on one a second: a typing event sent before
  // the send reached it before the send did, so 1 s after the ack is always past that second.
  typing(id) {
    const conv = this.convs.get(id);
    if (!conv || conv.dm || !conv.joined || conv.large) return;
    if (this.pending.some((p) => p.conv === id)) {
      this.#typingDue = id;
      return;
    }
    const resend = this.#ackedAt > this.#typingSent ? this.#ackedAt + TYPING_PASSED_MS : Infinity;
    const wait = Math.min(this.#typingSent + TYPING_EVERY_MS, resend) - Date.now();
    if (wait > 0) {
      if (resend < Infinity && !this.#typingTimer) {
        this.#typingTimer = setTimeout(() => {
          this.#typingTimer = null;
          if (this.active === id) this.typing(id);
        }, wait);
      }
      return;
    }
    this.#typingSent = Date.now();
    this.#typingDue = null;
    this.conn.notify({ type: 'typing', room: id });
  }

  // Sends the queue one at a time, in order: a send refused for the rate limit (or the server
  // being busy) is tried again before any later one goes out.
  async #pump() {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      let delay = RETRY_SOON_MS;
      while (this.loggedIn && !this.#rejoining && this.pending.length) {
        const p = this.pending[0];
        for (const x of this.pending) if (x.state === 'waiting') x.state = 'queued';
        const outcome = await this.#sendOne(p);
        if (outcome === 'stop') break;
        if (outcome === 'retry') {
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 8000);
        } else {
          delay = RETRY_SOON_MS;
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  async #sendOne(p) {
    const conv = this.conv(p.conv);
    const msg = { type: 'send', text: p.text, cid: p.cid, reply_to: p.reply_to };
    if (conv.dm) msg.to = conv.peer;
    else msg.room = conv.id;
    p.state = 'sending';
    this.emit('pending', { conv });
    try {
      const ack = await this.conn.request(msg);
      const room = this.conv(ack.room);
      this.#insert(room, {
        room: ack.room, seq: ack.seq, ts: Date.now(), from: this.me.name, text: p.text, cid: p.cid, reply_to: p.reply_to, local: true,
      });
      this.#settle(p.cid);
      this.emit('messages', { conv: room });
      this.emit('pending', { conv: room });
      this.#ackedAt = Date.now();
      if (this.#typingDue === room.id && !this.pending.some((x) => x.conv === room.id)) this.typing(room.id);
      return 'sent';
    } catch (err) {
      if (!this.pending.includes(p)) return 'next'; // discarded meanwhile
      const code = err.code;
      if (code === 'disconnected') {
        p.state = 'waiting'; // retried with its cid after the next login
        this.emit('pending', { conv });
        return 'stop';
      }
      if (code === 'timeout' || code === 'rate_limited' || code === 'server_busy') {
        p.state = 'retry';
        for (const x of this.pending) if (x !== p) x.state = 'queued';
        if (code !== 'timeout') this.emit('notice', { conv, code, message: err.message });
        this.emit('pending', { conv });
        return 'retry';
      }
      this.pending = this.pending.filter((x) => x !== p);
      this.#savePending();
      if (code === 'no_such_user' && conv.dm && !conv.messages.length) conv.missing = true;
      this.emit('notice', { conv, code, message: err.message, text: p.text });
      this.emit('pending', { conv });
      this.#save();
      return 'next';
    }
  }

  #settle(cid) {
    const before = this.pending.length;
    this.pending = this.pending.filter((p) => p.cid !== cid);
    if (this.pending.length !== before) this.#savePending();
  }

  // --- connection life ---

  #onState({ state }) {
    if (state !== 'open') {
      if (this.loggedIn) {
        this.loggedIn = false;
        for (const conv of this.convs.values()) {
          for (const t of conv.typing.values()) clearTimeout(t);
          conv.typing.clear();
        }
        this.emit('typing', {});
      }
      for (const p of this.pending) p.state = 'waiting';
    } else if (this.token && !this.loggedIn) {
      this.#resume();
    }
    this.emit('status', { state, retryAt: this.conn.retryAt, switching: this.conn.switching });
    if (this.pending.length) this.emit('pending', {});
  }

  async #resume() {
    const gen = ++this.#resumeGen;
    let welcome;
    try {
      welcome = await this.conn.request({ type: 'login', token: this.token });
    } catch (err) {
      if (gen !== this.#resumeGen) return;
      if (err.code === 'bad_token' || err.code === 'name_taken' || err.code === 'bad_credentials') {
        this.signOut(err.code);
      }
      return; // disconnected: the next connection tries again
    }
    if (gen !== this.#resumeGen) return;
    this.#welcome(welcome);
  }

  // Loads what was remembered for `name`: rooms with their last seq, the open one, unsent texts.
  #restore(name) {
    if (this.convs.size) return;
    const saved = storage.userState(name);
    this.me = { name, guest: this.me ? this.me.guest : null };
    for (const [id, seq] of Object.entries(saved.rooms)) {
      const conv = this.conv(id);
      conv.seq = typeof seq === 'number' ? seq : null;
      if (!conv.dm) conv.joined = true;
    }
    this.pending = saved.pending.map((p) => ({ ...p, state: 'waiting' }));
    this.active = saved.active;
  }

  async #welcome(welcome) {
    const gen = this.#resumeGen;
    this.me = { name: welcome.name, guest: welcome.guest };
    this.#onEvent({ ...welcome, type: 'status', text: welcome.status_text });
    this.token = welcome.token;
    storage.saveUser(welcome.name, { token: welcome.token });
    this.loggedIn = true;
    this.conn.resetBackoff();
    // A registered user's rooms are the server's saved rooms.
    const saved = welcome.guest || !Array.isArray(welcome.rooms) ? null : welcome.rooms;
    if (saved?.length) for (const conv of this.convs.values()) if (!conv.dm && !saved.some((r) => r.name === conv.id)) this.convs.delete(conv.id);
    for (const r of saved || []) this.conv(r.name).joined = true;
    if (!this.convs.size) {
      const general = this.conv('general');
      general.joined = true;
    }
    for (const r of [...(saved || []), ...(welcome.dms || [])]) {
      const conv = this.conv(r.room || r.name);
      conv.latest = Math.max(conv.latest, r.seq);
      if (typeof r.unread !== 'number') continue;
      Object.assign(conv, { read: r.read, unread: r.unread, mentions: r.mentions, counted: r.seq });
      if (conv.id === this.active) conv.marker = r.unread ? r.read : null;
    }
    if (!this.active || !this.convs.has(this.active)) this.active = this.convs.get('general')?.joined ? 'general' : [...this.convs.values()].find((v) => v.joined)?.id || 'general';
    this.conv(this.active);
    this.emit('session');
    this.emit('status', { state: 'open' });
    if (!this.#welcomed) this.emit('active', { conv: this.conv(this.active) });
    this.#welcomed = true;
    const work = [];
    this.#rejoining = true; // a send before its room is joined on this connection is refused
    for (const conv of this.convs.values()) {
      if (!conv.dm && conv.joined) work.push(this.#join(conv));
      else if (conv.dm && conv.seq !== null && conv.latest > conv.seq) work.push(this.#catchUpDm(conv));
    }
    await Promise.allSettled(work);
    if (gen !== this.#resumeGen || !this.loggedIn) return;
    this.#rejoining = false;
    this.#pump();
    this.#save();
    this.refreshRooms();
    clearInterval(this.#roomsTimer);
    this.#roomsTimer = setInterval(() => this.refreshRooms(), ROOMS_REFRESH_MS);
    const active = this.convs.get(this.active);
    if (active && active.dm && !active.messages.length) this.loadOlder(active).catch(() => {});
  }

  // Joins a room, with `since` when a seq was seen before (the replay follows as messages), or
  // a little before it when nothing of the room is loaded (a reload, a first visit).
  async #join(conv) {
    const msg = { type: 'join', room: conv.id };
    const seen = conv.seq;
    const top = conv.messages.length ? 0 : seen ?? Math.max(conv.latest, this.publicRooms.find((r) => r.name === conv.id)?.seq ?? 0);
    if (top) msg.since = Math.max(0, top - REPLAY_BACK);
    else if (seen !== null) msg.since = seen;
    const reply = await this.conn.request(msg);
    if (seen === null && !top && reply.seq > 0 && !conv.messages.length) {
      conv.seq = reply.seq; // the room's seq was not known: joined again, from a little before it
      return this.#join(conv);
    }
    // What the page had seen before is not news, however it comes back.
    if (top) conv.counted = Math.max(conv.counted, seen ?? reply.seq);
    conv.stateSeq = reply.seq;
    conv.joined = true;
    const before = conv.members;
    this.#setMembers(conv, reply.members, reply.away, reply.status_text);
    // Members the page knew who are not back (yet, after a restart) stay listed, as offline.
    if (reply.members_truncated !== true) for (const name of before.keys()) if (!conv.members.has(name)) conv.members.set(name, 'offline');
    conv.count = typeof reply.member_count === 'number' ? reply.member_count : reply.members.length;
    // A cut list means a large room; a whole one is live until a `count` says otherwise.
    conv.large = reply.members_truncated === true;
    conv.membersMore = conv.large;
    conv.membersAfter = cursorOf(reply.members);
    if (conv.large) this.#clearTyping(conv);
    conv.latest = Math.max(conv.latest, reply.seq);
    conv.topic = reply.topic || '';
    conv.role = reply.role || 'member';
    conv.owner = (reply.owner || '').toLowerCase();
    conv.muted = reply.muted_until ?? null; // ms, 0: until unmuted
    this.emit('topic', { conv });
    if (typeof reply.read === 'number') conv.read = Math.max(conv.read ?? 0, reply.read);
    if (conv.seq === null) conv.seq = reply.seq;
    if (this.active === conv.id) this.markRead(conv);
    // Replayed from further back than seen, retention may have taken only what was seen: the
    // replay's first seq tells.
    if (reply.truncated && !top) this.emit('notice', { conv, code: 'truncated' });
    else if (reply.truncated && seen !== null && reply.seq > seen) conv.gapAfter = seen;
    this.emit('members', { conv });
    this.#save();
    if (conv.messages.length < HISTORY_PAGE && conv.hasMore) {
      // Older messages than the replay, so the view is not empty after a reload.
      this.loadOlder(conv).catch(() => {});
    }
  }

  // Direct messages that arrived while this page was away (registered users only).
  async #catchUpDm(conv) {
    if (this.me.guest) return;
    let before = conv.latest + 1;
    for (let page = 0; page < 10; page++) {
      let reply;
      try {
        reply = await this.conn.request({ type: 'history', room: conv.id, before, limit: 200 });
      } catch {
        return;
      }
      for (const m of reply.messages) this.#received(conv, m, true);
      if (reply.messages.length < 200 || reply.messages[0].seq <= conv.seq + 1) break;
      before = reply.messages[0].seq;
    }
    conv.seq = Math.max(conv.seq ?? 0, conv.latest);
    this.emit('messages', { conv, reset: true });
    this.#save();
  }

  // --- server events ---

  #onEvent(msg) {
    switch (msg.type) {
      case 'message': {
        const conv = this.conv(msg.room);
        this.#received(conv, msg, false);
        this.emit('messages', { conv });
        if (this.active === conv.id) this.markRead(conv);
        break;
      }
      case 'left':
      case 'kicked':
        // Left on another device, or kicked: the room goes from here too.
        if (!this.convs.get(msg.room)?.joined) break;
        this.#drop(msg.room);
        this.emit('gone');
        if (msg.by) this.emit('notice', { code: 'kicked', message: `you were ${msg.banned ? 'banned' : 'removed'} from #${msg.room} by ${msg.by}${msg.reason ? ': ' + msg.reason : ''}` });
        break;
      case 'read': {
        // Read on another device: the counts go down here too.
        const conv = this.convs.get(msg.room);
        if (conv && typeof msg.seq === 'number') this.#readTo(conv, msg.seq);
        break;
      }
      case 'edit':
      case 'delete':
      case 'reaction':
      case 'topic':
      case 'role':
      case 'kick':
      case 'ban':
      case 'unban':
      case 'mute':
      case 'unmute': {
        // Timeline events (protocol 1.1): they take a seq like messages, and may change one.
        const conv = this.conv(msg.room);
        this.#advance(conv, msg);
        // A replayed event is older than what `joined` said of the room.
        if (msg.seq > conv.stateSeq) {
          if (msg.type === 'topic') conv.topic = msg.text;
          if (msg.type === 'role' && msg.role === 'owner') {
            // A new owner: the one before becomes an op (protocol 1.1 rule 62), with no event of its own.
            if (conv.role === 'owner' && conv.owner === this.me?.name.toLowerCase()) conv.role = 'op';
            conv.owner = msg.user.toLowerCase();
          }
          if (msg.user?.toLowerCase() === this.me?.name.toLowerCase()) {
            if (msg.type === 'role') conv.role = msg.role;
            if (msg.type === 'mute') conv.muted = msg.duration ? msg.ts + msg.duration * 1000 : 0;
            if (msg.type === 'unmute') conv.muted = null;
          }
        }
        this.emit('topic', { conv });
        const m = conv.bySeq.get(msg.target);
        if (m) {
          applyEvent(m, msg, this.me?.name);
          this.emit('messages', { conv, changed: m });
        } else if (LINE_EVENTS.has(msg.type) && this.#insert(conv, msg)) {
          this.emit('messages', { conv }); // a line of its own in the conversation
        }
        this.#save();
        break;
      }
      case 'status':
        // This user's status, set here or on another device.
        if (msg.state) Object.assign(this, { state: msg.state, statusText: msg.text || '' });
        this.emit('session');
        break;
      case 'presence': {
        const conv = this.convs.get(msg.room);
        if (!conv) break;
        this.away.set(msg.user.toLowerCase(), msg.status_text || '');
        if (conv.large && msg.state === 'offline') conv.members.delete(msg.user);
        else conv.members.set(msg.user, msg.state);
        this.emit('members', { conv });
        break;
      }
      case 'count': {
        // A large room's size every few seconds, and the switches between large and small.
        const conv = this.convs.get(msg.room);
        if (!conv || conv.dm || !conv.joined || typeof msg.member_count !== 'number') break;
        conv.count = msg.member_count;
        if (msg.large === true && !conv.large) this.#becameLarge(conv);
        else if (msg.large === false) conv.large = false; // the whole list follows as `members`
        this.emit('members', { conv });
        break;
      }
      case 'members': {
        // Unasked: a large room became small. The whole list again, and presence from now on.
        const conv = this.convs.get(msg.room);
        if (!conv || conv.dm || !conv.joined || !Array.isArray(msg.members)) break;
        conv.large = false;
        this.#setMembers(conv, msg.members, msg.away, msg.status_text);
        if (typeof msg.member_count === 'number') conv.count = msg.member_count;
        conv.membersMore = msg.more === true && msg.members.length > 0;
        conv.membersAfter = msg.members.length ? msg.members.at(-1).toLowerCase() : '';
        this.emit('members', { conv });
        if (conv.membersMore) this.loadMembers(conv, { all: true }).catch(() => {});
        break;
      }
      case 'typing': {
        const conv = this.convs.get(msg.room);
        if (!conv || conv.large || !this.me || msg.user === this.me.name) break;
        clearTimeout(conv.typing.get(msg.user));
        conv.typing.set(msg.user, setTimeout(() => {
          conv.typing.delete(msg.user);
          this.emit('typing', { conv });
        }, TYPING_SHOWN_MS));
        this.emit('typing', { conv });
        break;
      }
      case 'error':
        this.emit('notice', { code: msg.code, message: msg.message });
        break;
      default:
        break;
    }
  }

  #received(conv, msg, fromHistory) {
    const mine = this.me && msg.from.toLowerCase() === this.me.name.toLowerCase();
    if (conv.dm && !mine) conv.peer = msg.from;
    const fresh = this.#insert(conv, msg);
    if (!fromHistory) this.#advance(conv, msg);
    if (msg.cid && mine) {
      this.#settle(msg.cid);
      this.emit('pending', { conv });
    }
    if (conv.typing.has(msg.from)) {
      clearTimeout(conv.typing.get(msg.from));
      conv.typing.delete(msg.from);
      this.emit('typing', { conv });
    }
    if (fresh && !mine && !msg.deleted && msg.seq > conv.counted && msg.seq > (conv.read ?? 0) && (this.active !== conv.id || document.hidden)) {
      conv.unread += 1;
      if (mentions(msg, this.me.name)) conv.mentions += 1;
      this.emit('rooms');
      if (!fromHistory && (conv.dm || mentions(msg, this.me.name))) this.emit('attention', { conv, msg });
    } else if (fresh && conv.dm && conv.messages.length === 1) {
      this.emit('rooms');
    }
    this.#save();
  }

  // A live event's seq: the resume point moves on (a dm gap is fetched, registered users only).
  #advance(conv, msg) {
    if (conv.gapAfter !== null) {
      if (msg.seq > conv.gapAfter + 1) this.emit('notice', { conv, code: 'truncated' });
      conv.gapAfter = null;
    }
    if (conv.dm && conv.seq !== null && msg.seq > conv.seq + 1 && !this.me.guest) {
      conv.latest = Math.max(conv.latest, msg.seq - 1);
      this.#catchUpDm(conv); // a gap: fetch what is missing
    } else if (conv.seq === null || msg.seq > conv.seq) {
      conv.seq = msg.seq;
    }
    conv.latest = Math.max(conv.latest, msg.seq);
  }

  // Puts a message (or an event line) in seq order; a seq already there is not added twice.
  #insert(conv, msg) {
    const have = conv.bySeq.get(msg.seq);
    if (have) {
      if (have.local && !msg.local) Object.assign(have, msg, { local: false });
      return false;
    }
    const m = LINE_EVENTS.has(msg.type) ? { ...msg, event: msg.type } : {
      seq: msg.seq, ts: msg.ts, from: msg.from, text: msg.text ?? '', cid: msg.cid, local: !!msg.local,
      deleted: msg.deleted === true, edited: msg.edited, reply_to: msg.reply_to, mentions: msg.mentions,
      reactions: Array.isArray(msg.reactions) ? msg.reactions : [],
    };
    conv.bySeq.set(m.seq, m);
    const list = conv.messages;
    let i = list.length;
    if (i && list[i - 1].seq > m.seq) {
      // Older than the last: found by halving (a page of history goes in front of thousands).
      let lo = 0;
      while (lo < i) {
        const mid = (lo + i) >> 1;
        if (list[mid].seq < m.seq) lo = mid + 1;
        else i = mid;
      }
    }
    list.splice(i, 0, m);
    return true;
  }

  // --- persistence ---

  #save() {
    if (this.#saveTimer) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = null;
      this.saveNow();
    }, 300);
  }

  saveNow() {
    if (!this.me || !this.token) return;
    const rooms = {};
    for (const conv of this.convs.values()) {
      if ((conv.dm && conv.seq !== null && !conv.missing) || (!conv.dm && conv.joined)) rooms[conv.id] = conv.seq;
    }
    const open = this.convs.get(this.active);
    storage.saveUser(this.me.name, { token: this.token, rooms, active: open && !open.missing ? this.active : null });
  }

  #savePending() {
    if (!this.me) return;
    storage.saveUser(this.me.name, {
      pending: this.pending.map(({ cid, conv, text, reply_to }) => ({ cid, conv, text, reply_to })),
    });
  }
}
