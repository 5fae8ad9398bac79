// Search: the header's field (Ctrl+K or /), a panel of results, "More results" while there are
// more; a result opens its room at the message (view.jumpTo loads older history to reach it).

import { $, h } from './dom.js';
import { textItem } from './messages.js';
import { day, errorText, time } from './words.js';

const ERRORS = {
  bad_request: 'Search for at least one word; quotes come in pairs.',
  too_long: 'A search holds at most 200 characters.',
  rate_limited: 'Too many searches: try again in a moment.',
};

export class Search {
  #ask = null; // the request shown: {q, room}
  #next = null; // its cursor while there is more
  #turn = 0; // a newer search makes older answers stale

  constructor(view, open) {
    this.view = view;
    this.open = open;
    this.field = $('#search-q');
    this.panel = $('#search-panel');
    this.list = $('#search-results');
    this.note = $('#search-note');
    this.more = $('#search-more');
    $('#search-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.#run(false);
    });
    $('#search-room').addEventListener('change', () => this.#ask && this.#run(false));
    this.more.addEventListener('click', () => this.#run(true));
    view.client.addEventListener('active', (e) => { $('#search-scope').textContent = `Only in ${e.detail.conv.title}`; });
    this.list.addEventListener('click', (e) => {
      const li = e.target.closest('li');
      if (li && !e.target.closest('a')) this.#go(li.result);
    });
    this.field.addEventListener('focus', () => this.#ask && (this.panel.hidden = false));
    document.addEventListener('pointerdown', (e) => !this.panel.contains(e.target) && e.target !== this.field && this.close());
    document.addEventListener('keydown', (e) => {
      const typing = e.target.closest?.('input, textarea');
      if (!document.body.classList.contains('signed-in')) return;
      if ((e.key === 'k' && (e.ctrlKey || e.metaKey)) || (e.key === '/' && !typing)) {
        e.preventDefault();
        this.field.focus();
        this.field.select();
      } else if (e.key === 'Escape' && !this.panel.hidden && (this.panel.contains(e.target) || e.target === this.field)) {
        this.close();
        view.text.focus();
      }
    });
  }

  close() {
    this.panel.hidden = true;
  }

  async #run(more) {
    if (!more) {
      const conv = this.view.active;
      const here = $('#search-room').checked && conv;
      this.#ask = { q: this.field.value, room: here ? conv.id : undefined };
      this.#next = null;
      this.list.replaceChildren();
    }
    const turn = ++this.#turn;
    this.panel.hidden = false;
    this.more.hidden = true;
    this.note.textContent = 'Searching…';
    let reply;
    try {
      reply = await this.view.client.conn.request({ type: 'search', ...this.#ask, after: more ? this.#next : undefined });
    } catch (err) {
      if (turn !== this.#turn) return;
      // A cursor from before a restart is refused: search again from the start.
      if (more && err.code === 'bad_request') return this.#run(false);
      this.note.textContent = ERRORS[err.code] || errorText(err.code, err.message);
      this.note.className = 'error';
      return;
    }
    if (turn !== this.#turn) return;
    this.#next = reply.next || null;
    for (const r of reply.results) this.list.append(this.#item(r));
    const n = this.list.children.length;
    this.note.className = 'hint';
    this.note.textContent = `${n || 'No'} result${n === 1 ? '' : 's'}${this.#next ? ' so far' : ''}`;
    this.more.hidden = !this.#next;
  }

  #item(r) {
    const dm = r.room.startsWith('dm:');
    const me = this.view.client.me?.name.toLowerCase();
    const where = dm ? '@' + (r.room.split(':').slice(1).find((n) => n !== me) || me) : `#${r.room}`;
    const li = h('li', { class: 'result' },
      h('button', { type: 'button', class: 'result-head' }, h('b', {}, where), ` ${r.from} · ${day(r.ts)} ${time(r.ts)}`),
      textItem(r.text, r.from));
    li.result = r;
    return li;
  }

  async #go(r) {
    this.close();
    if (this.view.client.active !== r.room && await this.open(r.room)) return;
    await this.view.jumpTo(r.seq);
  }
}
