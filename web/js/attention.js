// Getting a person's attention for a mention or a direct message: a desktop notification (only
// once they asked for it with the button, never at load) and a short beep (WebAudio, no sound file).

import { $ } from './dom.js';

const KEY = 'parley.alerts';

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || {};
  } catch {
    return {};
  }
}

export class Attention {
  #prefs = load();
  #audio = null;

  constructor(client, open) {
    this.client = client;
    client.addEventListener('attention', (e) => this.#alert(e.detail, open));
    $('#notify-btn').addEventListener('click', () => this.#toggleNotify());
    const sound = $('#sound');
    sound.checked = Boolean(this.#prefs.sound);
    sound.addEventListener('change', () => {
      this.#save({ sound: sound.checked });
      if (sound.checked) this.beep(); // a gesture lets the page play sound, and the person hears it
    });
    this.render();
  }

  #save(fields) {
    Object.assign(this.#prefs, fields);
    try {
      localStorage.setItem(KEY, JSON.stringify(this.#prefs));
    } catch {
      // storage off: the choice lasts until the page is closed
    }
  }

  render() {
    const button = $('#notify-btn');
    const state = window.Notification ? Notification.permission : 'unsupported';
    const on = state === 'granted' && this.#prefs.notify;
    button.disabled = state === 'denied' || state === 'unsupported';
    button.setAttribute('aria-pressed', String(on));
    button.textContent = state === 'denied' ? 'Notifications are blocked in this browser'
      : state === 'unsupported' ? 'This browser has no notifications'
        : on ? 'Turn off notifications' : 'Turn on notifications';
  }

  async #toggleNotify() {
    if (!window.Notification) return;
    if (this.#prefs.notify && Notification.permission === 'granted') {
      this.#save({ notify: false });
    } else {
      const answer = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
      this.#save({ notify: answer === 'granted' });
    }
    this.render();
  }

  #alert({ conv, msg }, open) {
    if (this.#prefs.sound) this.beep();
    if (!this.#prefs.notify || !window.Notification || Notification.permission !== 'granted') return;
    const title = conv.dm ? `${msg.from} (direct message)` : `${msg.from} in ${conv.title}`;
    const note = new Notification(title, { body: msg.text.slice(0, 300), tag: conv.id });
    note.onclick = () => {
      window.focus();
      open(conv.id);
      note.close();
    };
  }

  beep() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    this.#audio ||= new Ctx();
    const ctx = this.#audio;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.25);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.25);
  }
}
