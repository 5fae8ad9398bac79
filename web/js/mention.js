// @name completion in the message box: names of the open conversation's members that start with
// what follows the @ before the caret. Arrow keys choose, Tab or Enter takes, Escape closes.

import { fill, h } from './dom.js';

export class Mentions {
  #names = [];
  #at = 0;
  #start = 0; // where the typed part of the name starts in the box

  constructor(box, list, names) {
    this.box = box;
    this.list = list;
    this.names = names; // () => the names to offer
    box.addEventListener('input', () => this.update());
    box.addEventListener('blur', () => this.close());
  }

  get open() {
    return !this.list.hidden;
  }

  update() {
    const before = this.box.value.slice(0, this.box.selectionStart);
    const m = /(?:^|[^\w.-])@([\w.-]*)$/.exec(before);
    const part = m ? m[1].toLowerCase() : null;
    const names = part === null ? [] : this.names().filter((n) => n.toLowerCase().startsWith(part));
    // A whole name typed needs no list: Enter sends it as it is.
    if (!names.length || names.some((n) => n.toLowerCase() === part)) return this.close();
    this.#names = names.sort().slice(0, 8);
    this.#start = before.length - part.length;
    this.#at = 0;
    this.#render();
  }

  #render() {
    fill(this.list, this.#names.map((name, i) => h('li', {
      id: `mention-${i}`, role: 'option', 'aria-selected': String(i === this.#at),
      onmousedown: (e) => {
        e.preventDefault(); // the box keeps the focus
        this.#pick(i);
      },
    }, '@' + name)));
    this.list.hidden = false;
    this.box.setAttribute('aria-expanded', 'true');
    this.box.setAttribute('aria-activedescendant', `mention-${this.#at}`);
  }

  close() {
    this.list.hidden = true;
    this.box.setAttribute('aria-expanded', 'false');
    this.box.removeAttribute('aria-activedescendant');
  }

  // A key in the box: whether the list used it.
  key(e) {
    if (!this.open || e.isComposing) return false;
    const n = this.#names.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      this.#at = (this.#at + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.#render();
    } else if (e.key === 'Enter' || e.key === 'Tab') this.#pick(this.#at);
    else if (e.key === 'Escape') this.close();
    else return false;
    e.preventDefault();
    return true;
  }

  #pick(i) {
    const { box } = this;
    const name = this.#names[i] + ' ';
    const end = box.selectionStart;
    box.value = box.value.slice(0, this.#start) + name + box.value.slice(end);
    box.setSelectionRange(this.#start + name.length, this.#start + name.length);
    this.close();
    box.dispatchEvent(new Event('input'));
  }
}
