// What can be done to one message: reply, react, edit and delete, from
// a small toolbar shown on hover, on keyboard focus, and (on phones) on
// a tap; the inline editor (Enter saves, Escape cancels); the delete
// confirmation. The timeline is drawn anew on every event, so this keeps
// its own state (which message is being edited and the text so far,
// whose picker is open, which was tapped, which spoilers were shown) and
// the drawing in messages.js asks it what to show. A direct-message
// timeline (dms.js) keeps one of its own, with rows shaped as channels'
// (`author`, `body`, and its conversation as `channel`) and its own
// addresses in the node's API.

import { api, enc } from './api.js';
import { h, icon, announce } from './dom.js';
import { bareName, textOf } from './format.js';
import { excerpt } from './markdown.js';
import { reactionChips, reactionPicker, setReaction } from './reactions.js';

const utf8 = new TextEncoder();

// A message that never went out (a channel's refused, a DM's failed):
// nothing to do to it.
const notSent = (m) => m.state === 'refused' || m.state === 'failed';

// Where channel message `m` is in the node's API.
const channelMessage = (m) => `/channels/${enc(m.channel)}/messages/${enc(m.id)}`;

export class MessageActions {
  // `me()`: the session; `canWrite(channel)`: may write (so reply and
  // react) there; `canModerate(channel)`: may delete others' messages
  // there (its owner or a moderator); `apply(row)`: a message as the node
  // now has it (merge and draw); `redraw()`; `reply(m)`: start a reply in
  // the composer; `limit()`: the body limit (in bytes, or in
  // `measure`'s unit); `dialogHost()`:
  // where the confirmation dialog goes; `notice(text)`: say what failed.
  // For other timelines than channels (all optional): `at(m)`: the
  // message's path in the node's API; `textField`: what an edit's text is
  // called there; `measure(text)`: [used, unit] against `limit()`
  // (default UTF-8 bytes).
  constructor(deps) {
    this.deps = {
      at: channelMessage,
      textField: 'body',
      measure: (text) => [utf8.encode(text).length, 'bytes'],
      ...deps,
    };
    this.editing = null; // { id, channel, text, error }
    this.pickerFor = null;
    this.tapped = null;
    this.revealed = new Set();
    this.focusNext = null; // a selector to focus after the next drawing
    this.editorFocus = null; // the editor's selection while it is redrawn
  }

  reset() {
    this.editing = null;
    this.pickerFor = null;
    this.tapped = null;
  }

  own(m) {
    const me = this.deps.me();
    return !!me && me.kind === 'user' && m.author === me.username;
  }

  // A message that shares a file cannot be edited (the node says 409):
  // delete it and share again.
  canEdit(m) {
    return this.own(m) && !m.deleted && !notSent(m) && !m.file;
  }

  canDelete(m) {
    if (m.deleted || notSent(m)) return false;
    return this.own(m) || this.deps.canModerate(m.channel);
  }

  canAct(m) {
    const me = this.deps.me();
    return !!me && me.kind === 'user' && this.deps.canWrite(m.channel) && !m.deleted && !notSent(m);
  }

  // ------------------------------------------------------------ drawing

  // The toolbar of `m` (null when nothing can be done to it).
  bar(m) {
    if (!this.canAct(m) && !this.canDelete(m)) return null;
    const btn = (cls, label, name, onclick) => h('button', {
      type: 'button', class: `act-btn ${cls}`, 'aria-label': label, title: label, onclick,
    }, icon(name));
    const name = bareName(m.author);
    return h('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': `Actions on ${name}'s message` },
      this.canAct(m) ? btn('act-react', 'Add a reaction', 'smile', (e) => { e.stopPropagation(); this.togglePicker(m); }) : null,
      this.canAct(m) ? btn('act-reply', 'Reply', 'reply', (e) => { e.stopPropagation(); this.reply(m); }) : null,
      this.canEdit(m) ? btn('act-edit', 'Edit', 'edit', (e) => { e.stopPropagation(); this.startEdit(m); }) : null,
      this.canDelete(m) ? btn('act-delete danger', 'Delete', 'trash', (e) => { e.stopPropagation(); this.remove(m); }) : null);
  }

  // The chips and, when open, the picker of `m`.
  reactions(m) {
    if (m.deleted) return null;
    const me = this.deps.me();
    const toggle = (emoji, on) => this.react(m, emoji, on);
    const chips = reactionChips(m, me && me.username, this.canAct(m) ? toggle : () => announce('You cannot react in this channel.'));
    const picker = this.pickerFor === m.id && this.canAct(m)
      ? reactionPicker(m, (emoji, on) => { this.closePicker(m, false); this.react(m, emoji, on); }, () => this.closePicker(m, true))
      : null;
    return chips || picker ? [chips, picker] : null;
  }

  isEditing(m) {
    return !!this.editing && this.editing.id === m.id && this.editing.channel === m.channel;
  }

  // The inline editor in place of `m`'s body.
  editor(m) {
    const ed = this.editing;
    const hint = `edit-hint-${m.id}`;
    const ta = h('textarea', {
      class: 'edit-input', rows: '1', 'aria-label': 'Edit the message', 'aria-describedby': hint,
      dataset: { editing: m.id },
    });
    ta.value = ed.text;
    const error = h('p', { class: 'send-error', role: 'alert' }, ed.error || '');
    const grow = () => { ta.style.height = 'auto'; ta.style.height = `${Math.min(ta.scrollHeight, 320)}px`; };
    ta.addEventListener('input', () => { ed.text = ta.value; grow(); });
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.saveEdit(); }
      else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); this.cancelEdit(); }
      // Arrows and Home/End move in the text, not between messages.
      e.stopPropagation();
    });
    requestAnimationFrame(grow);
    return h('form', { class: 'edit-form', onsubmit: (e) => { e.preventDefault(); this.saveEdit(); } },
      ta,
      h('p', { class: 'edit-hint', id: hint },
        'Escape to ', h('button', { type: 'button', class: 'link-btn keep-tab', onclick: () => this.cancelEdit() }, 'cancel'),
        ' · Enter to ', h('button', { type: 'submit', class: 'link-btn keep-tab' }, 'save')),
      error);
  }

  // Before the timeline is drawn anew: where the editor's caret is.
  beforeDraw() {
    const a = document.activeElement;
    this.editorFocus = a && a.classList && a.classList.contains('edit-input')
      ? { start: a.selectionStart, end: a.selectionEnd } : null;
  }

  // After: the editor keeps its caret; a pending focus is given.
  afterDraw(timeline) {
    if (this.editorFocus) {
      const ta = timeline.querySelector('.edit-input');
      if (ta) { ta.focus({ preventScroll: true }); ta.setSelectionRange(this.editorFocus.start, this.editorFocus.end); }
      this.editorFocus = null;
    }
    if (this.focusNext) {
      const el = timeline.querySelector(this.focusNext);
      this.focusNext = null;
      if (el) {
        el.focus({ preventScroll: true });
        if (el.classList.contains('edit-input')) el.setSelectionRange(el.value.length, el.value.length);
      }
    }
  }

  // On a phone (no hover), a tap on a message shows its toolbar.
  tap(e, m) {
    if (!window.matchMedia('(hover: none), (max-width: 768px)').matches) return;
    if (e.target.closest('button, a, textarea, [role=button], .emoji-picker')) return;
    this.tapped = this.tapped === m.id ? null : m.id;
    this.deps.redraw();
  }

  // ------------------------------------------------------------ doing

  reply(m) {
    this.pickerFor = null;
    this.deps.reply(m);
  }

  togglePicker(m) {
    this.pickerFor = this.pickerFor === m.id ? null : m.id;
    this.focusNext = this.pickerFor ? `#picker-${CSS.escape(m.id)} .emoji-btn` : null;
    this.deps.redraw();
  }

  closePicker(m, refocus) {
    this.pickerFor = null;
    if (refocus) this.focusNext = `article[data-id="${CSS.escape(m.id)}"] .act-react`;
    this.deps.redraw();
  }

  async react(m, emoji, on) {
    try {
      const row = await setReaction(this.deps.at(m), emoji, on);
      if (row) this.deps.apply(row);
    } catch (e) {
      announce(`Could not react: ${e.reason}`);
      this.deps.notice(`Could not react: ${e.reason}`);
    }
  }

  startEdit(m) {
    if (!this.canEdit(m)) return false;
    this.pickerFor = null;
    this.editing = { id: m.id, channel: m.channel, text: m.body, error: '' };
    this.focusNext = `article[data-id="${CSS.escape(m.id)}"] .edit-input`;
    this.deps.redraw();
    return true;
  }

  cancelEdit() {
    const ed = this.editing;
    if (!ed) return;
    this.editing = null;
    this.focusNext = `article[data-id="${CSS.escape(ed.id)}"]`;
    this.deps.redraw();
  }

  async saveEdit() {
    const ed = this.editing;
    if (!ed || ed.saving) return;
    const limit = this.deps.limit();
    const [used, unit] = this.deps.measure(ed.text);
    const fail = (text) => { ed.error = text; this.editorFocus = { start: ed.text.length, end: ed.text.length }; this.deps.redraw(); };
    if (!ed.text.trim()) return fail('A message cannot be empty; delete it instead.');
    if (used > limit) return fail(`Too long: ${used.toLocaleString('en')} ${unit}, the limit is ${limit.toLocaleString('en')}.`);
    ed.saving = true;
    try {
      const r = await api('PATCH', this.deps.at(ed), { [this.deps.textField]: ed.text });
      if (this.editing === ed) this.editing = null;
      this.focusNext = `article[data-id="${CSS.escape(ed.id)}"]`;
      if (r && r.message) this.deps.apply(r.message); else this.deps.redraw();
      announce('Message edited');
    } catch (e) {
      ed.saving = false;
      fail(`Not saved: ${e.reason}`);
    }
  }

  async remove(m) {
    this.pickerFor = null;
    const mine = this.own(m);
    const ok = await this.confirm(
      mine ? 'Delete your message?' : `Delete ${bareName(m.author)}'s message?`,
      excerpt(textOf(m), 160),
      'Delete');
    if (!ok) {
      this.focusNext = `article[data-id="${CSS.escape(m.id)}"]`;
      this.deps.redraw();
      return;
    }
    try {
      const r = await api('DELETE', this.deps.at(m));
      this.focusNext = `article[data-id="${CSS.escape(m.id)}"]`;
      if (r && r.message) this.deps.apply(r.message); else this.deps.redraw();
      announce('Message deleted');
    } catch (e) {
      this.deps.notice(`Could not delete: ${e.reason}`);
    }
  }

  // A modal yes/no; resolves true for yes.
  confirm(title, text, okLabel) {
    return new Promise((resolve) => {
      const host = this.deps.dialogHost();
      let d = document.getElementById('confirm-dialog');
      if (!d || !host.contains(d)) {
        if (d) d.remove();
        d = h('dialog', { class: 'dialog confirm', id: 'confirm-dialog', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text' });
        host.append(d);
      }
      let answered = false;
      const done = (v) => { if (answered) return; answered = true; if (d.open) d.close(); resolve(v); };
      d.replaceChildren(h('form', { method: 'dialog', class: 'dialog-form', onsubmit: (e) => { e.preventDefault(); done(true); } },
        h('h2', { id: 'confirm-title' }, title),
        h('p', { class: 'confirm-text', id: 'confirm-text' }, text || ' '),
        h('footer', { class: 'dialog-actions' },
          h('button', { type: 'button', class: 'btn ghost', id: 'confirm-cancel', onclick: () => done(false) }, 'Cancel'),
          h('button', { type: 'submit', class: 'btn danger', id: 'confirm-ok' }, okLabel))));
      d.addEventListener('close', () => done(false), { once: true });
      d.showModal();
      d.querySelector('#confirm-cancel').focus();
    });
  }
}
