// @mentions: the composer's autocomplete of the channel's members (typing
// "@" opens it; ↑/↓ choose, Enter or Tab pick, Escape closes), and the
// browser notification for a message that mentions me while the tab is
// hidden — asked for only from a click ("Enable notifications"), never
// on load.
//
// The autocomplete follows WAI-ARIA's list autocomplete: the textarea
// keeps focus and says `aria-autocomplete="list"`; while the list is
// open it names it (`aria-controls`) and the chosen option
// (`aria-activedescendant`); the list is a `listbox` of `option`s.

import { h, clear, announce } from './dom.js';
import { displayName, PRESENCE_LABEL } from './format.js';
import { avatar } from './sidebar.js';
import { excerpt, mentionsUser } from './markdown.js';

const MAX_SHOWN = 8;
// "@" then what is typed of a name, right before the caret; not after a
// letter (e-mail addresses).
const TYPED = /(?:^|[^A-Za-z0-9_.\-@])@([A-Za-z0-9_.-]{0,32})$/;

export class MentionAutocomplete {
  // `members()`: the channel's members ({ username, presence }) or null;
  // `me`: my username (not offered).
  constructor(ta, { members, me }) {
    this.ta = ta;
    this.members = members;
    this.me = me;
    this.items = [];
    this.active = 0;
    this.range = null;
    this.list = h('ul', { class: 'mention-list', id: 'mention-list', role: 'listbox', 'aria-label': 'People to mention', hidden: true });
    ta.setAttribute('aria-autocomplete', 'list');
    ta.addEventListener('input', () => this.update());
    ta.addEventListener('click', () => this.update());
    ta.addEventListener('blur', () => setTimeout(() => { if (document.activeElement !== ta) this.close(); }, 150));
  }

  get open() { return !this.list.hidden; }

  // What is typed after "@" at the caret, and where it starts.
  typed() {
    const ta = this.ta;
    if (ta.selectionStart !== ta.selectionEnd) return null;
    const before = ta.value.slice(Math.max(0, ta.selectionStart - 40), ta.selectionStart);
    const m = TYPED.exec(before);
    if (!m) return null;
    return { query: m[1], start: ta.selectionStart - m[1].length - 1, end: ta.selectionStart };
  }

  update() {
    const t = this.typed();
    const all = (this.members() || []).filter((u) => u.username !== this.me);
    if (!t || !all.length) { this.close(); return; }
    const q = t.query.toLowerCase();
    const starts = [];
    const contains = [];
    for (const u of all) {
      const n = u.username.toLowerCase();
      if (n.startsWith(q)) starts.push(u);
      else if (q && n.includes(q)) contains.push(u);
    }
    const byName = (a, b) => a.username.localeCompare(b.username);
    const items = [...starts.sort(byName), ...contains.sort(byName)].slice(0, MAX_SHOWN);
    if (!items.length) { this.close(); return; }
    const same = this.open && items.length === this.items.length && items.every((u, i) => u.username === this.items[i].username);
    this.items = items;
    this.range = t;
    if (!same) this.active = 0;
    this.draw();
  }

  draw() {
    clear(this.list, this.items.map((u, i) => h('li', {
      role: 'option', id: `mention-opt-${i}`, class: `mention-opt${i === this.active ? ' active' : ''}`,
      'aria-selected': String(i === this.active), dataset: { username: u.username },
      // mousedown, not click: the textarea keeps focus and its caret.
      onmousedown: (e) => { e.preventDefault(); this.pick(i); },
    }, avatar(u.username, u.presence, 'sm'),
    h('span', { class: 'mention-name' }, displayName(u.username)),
    u.presence ? h('span', { class: 'mention-presence' }, PRESENCE_LABEL[u.presence] || '') : null)));
    const wasOpen = this.open;
    this.list.hidden = false;
    this.ta.setAttribute('aria-controls', 'mention-list');
    this.ta.setAttribute('aria-activedescendant', `mention-opt-${this.active}`);
    const opt = this.list.children[this.active];
    if (opt) opt.scrollIntoView({ block: 'nearest' });
    if (!wasOpen) announce(`${this.items.length} ${this.items.length === 1 ? 'person' : 'people'} to mention; arrow keys to choose, Enter to pick`);
  }

  close() {
    if (!this.open) return;
    this.list.hidden = true;
    clear(this.list);
    this.items = [];
    this.ta.removeAttribute('aria-activedescendant');
    this.ta.removeAttribute('aria-controls');
  }

  pick(i) {
    const u = this.items[i];
    const r = this.range;
    if (!u || !r) return;
    const ta = this.ta;
    const after = ta.value.slice(r.end);
    const insert = `@${u.username}${after.startsWith(' ') ? '' : ' '}`;
    ta.value = ta.value.slice(0, r.start) + insert + after;
    const caret = r.start + insert.length + (after.startsWith(' ') ? 1 : 0);
    ta.setSelectionRange(caret, caret);
    this.close();
    ta.dispatchEvent(new Event('input', { bubbles: true }));
    ta.focus();
  }

  // The composer's keydown goes here first; true when it was handled.
  keydown(e) {
    if (!this.open || e.isComposing) return false;
    const n = this.items.length;
    switch (e.key) {
      case 'ArrowDown': this.active = (this.active + 1) % n; break;
      case 'ArrowUp': this.active = (this.active - 1 + n) % n; break;
      case 'Enter': case 'Tab':
        if (e.shiftKey) return false;
        this.pick(this.active);
        break;
      case 'Escape': this.close(); break;
      default: return false;
    }
    e.preventDefault();
    e.stopPropagation();
    if (this.open) this.draw();
    return true;
  }
}

// ---------------------------------------------------------------- notifications

export function notificationsSupported() {
  return typeof window !== 'undefined' && 'Notification' in window;
}

// 'default' (not asked yet), 'granted', 'denied', or 'unsupported'.
export function notificationState() {
  return notificationsSupported() ? Notification.permission : 'unsupported';
}

// Asks for permission; call it from a click. Answers the new state.
export async function askNotifications() {
  if (!notificationsSupported()) return 'unsupported';
  try { return await Notification.requestPermission(); } catch { return Notification.permission; }
}

// A browser notification for `m`, if it mentions `me` (by `mentions_me`,
// or the node's rule when the row does not say), the tab is hidden and
// permission was given; `open()` shows it when clicked.
export function notifyMention(m, me, open) {
  const mentioned = m.mentions_me || (!!me && mentionsUser(m.body, me));
  if (!mentioned || m.deleted || !document.hidden || notificationState() !== 'granted') return null;
  try {
    const n = new Notification(`${displayName(m.author)} mentioned you in #${m.channel}`, {
      body: excerpt(m.body, 160), tag: `mention-${m.id}`, icon: '/assets/favicon.svg',
    });
    n.onclick = () => { window.focus(); open(); n.close(); };
    return n;
  } catch { return null; }
}
