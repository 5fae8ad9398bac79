// What can be done to a message: one toolbar (react, reply, edit, delete) that moves to the
// message under the pointer, the one focused (arrow keys in the log) or the one tapped; the emoji
// picker, the inline editor and the delete confirmation. One toolbar for all keeps a long log light.

import { $, fill, h } from './dom.js';
import { errorText } from './words.js';

export const EMOJI = [['👍', 'thumbs up'], ['❤️', 'heart'], ['😂', 'laughter'], ['🎉', 'party'],
  ['😮', 'surprise'], ['😢', 'sadness'], ['🙏', 'thanks'], ['👀', 'eyes']];

// A refused edit, delete or reaction in words.
function refusal(err) {
  if (err.code === 'forbidden') return 'Only the author can change this message.';
  return errorText(err.code, err.message);
}

export class Actions {
  #li = null; // the message showing the toolbar
  #editor = null; // {seq, wrap, box, error}
  #refocusing = false; // place() giving the focus back after a redraw: not the user's move

  constructor(view) {
    this.view = view;
    this.client = view.client;
    this.list = view.list;
    this.bar = h('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions' });
    const list = this.list;
    const on = (type, fn) => list.addEventListener(type, fn);
    // Only a pointer that moves takes the toolbar along: one a new message slides under does not.
    on('mousemove', (e) => (e.movementX || e.movementY) && this.#show(e.target.closest('li.msg')));
    on('focusin', (e) => !this.#refocusing && this.#show(e.target.closest('li.msg')));
    on('contextmenu', (e) => { // a long press on a phone
      const li = e.target.closest('li.msg');
      if (li && e.pointerType !== 'mouse' && !e.target.closest('a')) {
        e.preventDefault();
        this.#show(li);
      }
    });
    on('click', (e) => {
      const chip = e.target.closest('.reaction');
      const quote = e.target.closest('.quote');
      if (chip) this.#toggle(this.#message(chip), chip.dataset.emoji);
      else if (quote) view.jumpTo(+quote.dataset.replyTo);
      else if (!e.target.closest('a, button, textarea')) this.#show(e.target.closest('li.msg'));
    });
    $('#pending').addEventListener('click', (e) => {
      const quote = e.target.closest('.quote');
      if (quote) view.jumpTo(+quote.dataset.replyTo);
    });
    list.addEventListener('pointerleave', (e) => {
      if (e.pointerType === 'mouse' && !this.bar.contains(document.activeElement)) this.#hide();
    });
    view.log.addEventListener('keydown', (e) => this.#key(e));
  }

  #message(el) {
    const li = el.closest('li.msg');
    return li && this.view.active?.bySeq.get(+li.dataset.seq);
  }

  #find(seq) {
    return this.list.querySelector(`li.msg[data-seq="${seq}"]`);
  }

  // The arrow keys move between messages; Escape leaves the toolbar for its message.
  #key(e) {
    const li = e.target.closest?.('li.msg');
    if (e.key === 'Escape' && this.bar.contains(e.target)) {
      e.preventDefault();
      if ($('.picker', this.bar)) this.#fillBar(this.#message(li));
      li.focus();
      return;
    }
    if ((e.key !== 'ArrowUp' && e.key !== 'ArrowDown') || (e.target !== this.view.log && e.target !== li)) return;
    const all = [...this.list.querySelectorAll('li.msg')];
    let i = li ? all.indexOf(li) + (e.key === 'ArrowUp' ? -1 : 1) : all.length - 1;
    i = Math.max(0, Math.min(all.length - 1, i));
    if (!all[i]) return;
    e.preventDefault();
    all[i].focus();
  }

  #show(li) {
    if (!li || li === this.#li || li.classList.contains('editing') || $('.confirm', li)) return;
    const m = this.#message(li);
    if (!m || m.deleted) return;
    this.#hide();
    this.#li = li;
    li.classList.add('acting');
    this.#fillBar(m);
    li.append(this.bar);
  }

  #hide() {
    this.#li?.classList.remove('acting');
    this.#li = null;
    this.bar.remove();
  }

  #fillBar(m) {
    const mine = this.client.me && m.from.toLowerCase() === this.client.me.name.toLowerCase();
    const b = (label, fn, more) => h('button', { type: 'button', onclick: fn, ...more }, label);
    fill(this.bar,
      b('React', () => this.#picker(m), { 'aria-label': 'Add a reaction', 'aria-expanded': 'false' }),
      b('Reply', () => this.view.startReply(m)),
      mine ? b('Edit', () => this.edit(m)) : null,
      mine || this.view.active.role !== 'member' ? b('Delete', () => this.#confirm(m)) : null);
  }

  #picker(m) {
    const row = h('div', { class: 'picker', role: 'group', 'aria-label': 'Pick a reaction' }, EMOJI.map(([emoji, name]) =>
      h('button', { type: 'button', 'aria-label': `React with ${name}`, title: name, onclick: () => {
        this.#fillBar(m);
        this.#toggle(m, emoji);
        this.#li?.focus();
      } }, emoji)));
    this.bar.firstChild.setAttribute('aria-expanded', 'true');
    this.bar.append(row);
    row.firstChild.focus();
    row.addEventListener('keydown', (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      const all = [...row.children];
      all[(all.indexOf(document.activeElement) + step + all.length) % all.length].focus();
    });
  }

  // Your reaction `emoji` on `m`, on if you do not hold it yet, else taken back.
  async #toggle(m, emoji) {
    if (!m) return;
    const held = m.reactions.some((r) => r.emoji === emoji && r.me);
    try {
      await this.client.react(this.view.active, m.seq, emoji, !held);
    } catch (err) {
      this.client.emit('notice', { message: refusal(err) });
    }
  }

  #confirm(m) {
    const li = this.#find(m.seq);
    const close = () => {
      box.remove();
      li.focus();
    };
    const no = h('button', { type: 'button', onclick: close }, 'Cancel');
    const box = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Delete this message?' },
      h('span', {}, 'Delete this message for everyone?'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        close();
        try {
          await this.client.remove(this.view.active, m.seq);
        } catch (err) {
          this.client.emit('notice', { message: refusal(err) });
        }
      } }, 'Delete'), no);
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') close();
      e.stopPropagation();
    });
    this.#hide();
    li.append(box);
    no.focus();
  }

  // The inline editor: Enter saves, Shift+Enter starts a new line, Escape cancels.
  edit(m) {
    this.close();
    const box = h('textarea', { class: 'edit-box', rows: 1, 'aria-label': 'Edit your message', 'aria-describedby': 'edit-hint' });
    box.value = m.text;
    const error = h('p', { class: 'error', role: 'alert' });
    const wrap = h('div', { class: 'editor' }, box,
      h('div', { class: 'edit-foot' },
        h('span', { class: 'hint', id: 'edit-hint' }, 'Enter saves, Escape cancels'),
        h('button', { type: 'button', onclick: () => this.#save() }, 'Save'),
        h('button', { type: 'button', class: 'link', onclick: () => this.close(true) }, 'Cancel')),
      error);
    box.addEventListener('keydown', (e) => {
      e.stopPropagation();
      if (e.key === 'Escape') this.close(true);
      else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.#save();
      }
    });
    this.#editor = { seq: m.seq, wrap, box, error };
    this.#hide();
    this.place();
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    this.#find(m.seq)?.scrollIntoView({ block: 'nearest' });
  }

  async #save() {
    const ed = this.#editor;
    const m = this.view.active?.bySeq.get(ed.seq);
    if (!m || m.deleted) return this.close();
    if (!ed.box.value.trim()) {
      ed.error.textContent = 'A message needs some text: delete it instead.';
      return;
    }
    if (ed.box.value === m.text) return this.close(true);
    try {
      await this.client.edit(this.view.active, ed.seq, ed.box.value);
      if (this.#editor === ed) this.close(true);
    } catch (err) {
      ed.error.textContent = refusal(err);
    }
  }

  // Another conversation is shown: nothing stays open.
  reset() {
    this.#editor = null;
    this.#hide();
  }

  // Closes the editor (`refocus`: back to its message), showing the message as it is now.
  close(refocus = false) {
    const ed = this.#editor;
    if (!ed) return;
    this.#editor = null;
    const m = this.view.active?.bySeq.get(ed.seq);
    if (m) this.view.redraw(m);
    if (refocus) this.#find(ed.seq)?.focus();
  }

  // After the messages are drawn again: the toolbar and the editor go back to their message, and
  // the keyboard focus with them.
  place(focused = document.activeElement) {
    const ed = this.#editor;
    const li = ed && this.#find(ed.seq);
    if (ed && this.view.active?.bySeq.get(ed.seq)?.deleted) this.#editor = null; // deleted meanwhile
    else if (li && !li.contains(ed.wrap)) {
      li.classList.add('editing');
      li.querySelector('.msg-text').replaceWith(ed.wrap);
    }
    if (this.#li && !this.#li.isConnected) {
      const again = this.#find(this.#li.dataset.seq);
      this.#hide();
      this.#show(again);
    }
    if (!focused || document.activeElement === focused) return;
    // The toolbar stays where the user last put it (a long press on another message, say).
    this.#refocusing = true;
    try {
      if (focused.isConnected) focused.focus();
      else if (focused.closest('li.msg')) this.#find(focused.closest('li.msg').dataset.seq)?.focus();
    } finally {
      this.#refocusing = false;
    }
  }
}
