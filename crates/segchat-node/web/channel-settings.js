// The "Channel settings" dialog, for a channel's owner and moderators:
// its title (the name shown — the name itself is signed into every
// message and never changes), its topic, who can see it and whether
// visitors may read it; and, for the owner alone, deleting it once its
// name is typed. Only what was changed is sent (PATCH). The server's
// limits are checked here first, so a refusal is rare; when one comes it
// is shown as the server put it.

import { api, enc } from './api.js';
import { h, clear, icon, announce } from './dom.js';

// The server's limits (segchat-proto `MAX_CHANNEL_TITLE_CHARS` and
// `MAX_CHANNEL_TOPIC_LEN`): a title of 1 to 64 characters; a topic of at
// most 300 bytes of UTF-8, on one line.
export const TITLE_MAX_CHARS = 64;
export const TOPIC_MAX_BYTES = 300;

const bytes = (t) => new TextEncoder().encode(t).length;
const chars = (t) => [...t].length;
// Control and formatting characters: the server refuses these (and a few
// more invisible ones, which it names when it does).
const HIDDEN = /[\p{Cc}\p{Cf}]/u;

// Who may open the dialog, and who may delete.
export function canManage(c) { return !!c && (c.my_role === 'owner' || c.my_role === 'moderator'); }
export function canDelete(c) { return !!c && c.my_role === 'owner'; }

// What the form asks to change from `before` (both {title, topic,
// visibility, allow_visitors}), as a PATCH body, or why it cannot be sent.
// An empty title means "show the name" (`name`).
export function settingsChange(before, now, name) {
  const title = now.title.trim() || name;
  const topic = now.topic.trim();
  const body = {};
  if (title !== before.title) {
    if (chars(title) > TITLE_MAX_CHARS) return { error: `A title is at most ${TITLE_MAX_CHARS} characters; this one has ${chars(title)}.` };
    if (HIDDEN.test(title)) return { error: 'A title may not contain control or invisible characters.' };
    body.title = title;
  }
  if (topic !== before.topic) {
    if (bytes(topic) > TOPIC_MAX_BYTES) return { error: `A topic is at most ${TOPIC_MAX_BYTES} bytes; this one has ${bytes(topic)}. Shorten it to save.` };
    if (HIDDEN.test(topic)) return { error: 'A topic may not contain control or invisible characters.' };
    body.topic = topic;
  }
  if (now.visibility !== before.visibility) body.visibility = now.visibility;
  if (now.allow_visitors !== before.allow_visitors) body.allow_visitors = now.allow_visitors;
  return { body };
}

// Opens the dialog in `d` for channel `c`. `saved(channel)` gets the
// channel as the node answered; `deleted(name)` runs once it is gone.
export function openChannelSettings(d, c, { saved, deleted }) {
  d.setAttribute('aria-labelledby', 'settings-title');
  d.dataset.settingsFor = c.name;
  let gone = false;
  const err = h('p', { class: 'form-error', role: 'alert', id: 'settings-error' });
  const titleCount = h('span', { class: 'field-count', id: 'set-title-count' });
  const topicCount = h('span', { class: 'field-count', id: 'set-topic-count' });
  const title = h('input', {
    id: 'set-title', name: 'title', value: c.title || c.name, autocomplete: 'off', placeholder: c.name,
    'aria-describedby': 'set-title-hint set-title-count', oninput: counts,
  });
  // One line: a pasted line break becomes a space, Enter saves.
  const topic = h('textarea', {
    id: 'set-topic', name: 'topic', rows: '3', value: c.topic || '', placeholder: 'What this channel is about',
    'aria-describedby': 'set-topic-hint set-topic-count',
    oninput: () => {
      if (/[\r\n]/.test(topic.value)) {
        const at = topic.selectionStart;
        topic.value = topic.value.replace(/\r\n?|\n/g, ' ');
        topic.setSelectionRange(at, at);
      }
      counts();
    },
    onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); form.requestSubmit(); } },
  });
  const visitors = h('input', { type: 'checkbox', id: 'set-visitors', name: 'allow_visitors', checked: c.visibility === 'public' && c.allow_visitors });
  const vis = (value, label, hint) => h('label', { class: 'radio-card' },
    h('input', { type: 'radio', name: 'visibility', value, checked: c.visibility === value, onchange: sync }),
    h('span', { class: 'radio-text' }, h('strong', {}, label), h('small', {}, hint)));
  const read = () => ({
    title: title.value, topic: topic.value, allow_visitors: visitors.checked,
    visibility: (form.querySelector('input[name=visibility]:checked') || {}).value || c.visibility,
  });

  function counts() {
    const t = chars(title.value.trim());
    titleCount.textContent = `${t}/${TITLE_MAX_CHARS}`;
    titleCount.classList.toggle('over', t > TITLE_MAX_CHARS);
    const b = bytes(topic.value.trim());
    topicCount.textContent = `${b}/${TOPIC_MAX_BYTES} bytes`;
    topicCount.classList.toggle('over', b > TOPIC_MAX_BYTES);
  }
  // Visitors only ever read public channels.
  function sync() {
    const pub = read().visibility === 'public';
    visitors.disabled = !pub;
    if (!pub) visitors.checked = false;
  }

  const save = h('button', { type: 'submit', class: 'btn primary', id: 'settings-save' }, 'Save changes');
  const form = h('form', { method: 'dialog', class: 'dialog-form', onsubmit: submit },
    h('header', { class: 'dialog-head' },
      h('h2', { id: 'settings-title' }, 'Channel settings'),
      h('p', { class: 'muted' }, 'For ', h('strong', {}, `#${c.name}`), ' — its name is part of every message and stays; the title is what everyone sees.')),
    h('div', { class: 'field' },
      h('div', { class: 'field-top' }, h('label', { for: 'set-title' }, 'Title'), titleCount),
      title,
      h('p', { class: 'hint', id: 'set-title-hint' }, `Up to ${TITLE_MAX_CHARS} characters. Leave it empty to show #${c.name}.`)),
    h('div', { class: 'field' },
      h('div', { class: 'field-top' }, h('label', { for: 'set-topic' }, 'Topic'), topicCount),
      topic,
      h('p', { class: 'hint', id: 'set-topic-hint' }, `One line, up to ${TOPIC_MAX_BYTES} bytes, shown under the title. Empty clears it.`)),
    h('fieldset', { class: 'field' },
      h('legend', {}, 'Who can see it'),
      vis('public', 'Public', 'Listed to everyone; anyone with an account can read and join.'),
      vis('members_only', 'Members only', 'Listed to registered users; only members read and write.'),
      vis('private', 'Private', 'Only members and people invited can see it.'),
      h('p', { class: 'hint' }, 'A change applies at once: whoever may no longer read is cut off.')),
    h('label', { class: 'check' }, visitors,
      h('span', {}, h('strong', {}, 'Allow visitors'), h('small', {}, 'People without an account can read a public channel (never write).'))),
    err,
    canDelete(c) ? dangerZone() : null,
    h('footer', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn ghost', id: 'settings-cancel', onclick: () => d.close() }, 'Cancel'),
      save));
  const before = read();
  before.title = c.title || c.name;
  before.topic = (c.topic || '').trim();

  async function submit(e) {
    e.preventDefault();
    const r = settingsChange(before, read(), c.name);
    if (r.error) { err.textContent = r.error; return; }
    if (!Object.keys(r.body).length) { d.close(); return; }
    err.textContent = '';
    save.disabled = true;
    try {
      const updated = await api('PATCH', `/channels/${enc(c.name)}`, r.body);
      d.close();
      announce('Channel settings saved');
      saved(updated || { ...c, ...r.body });
    } catch (ex) {
      err.textContent = `Not saved: ${ex.reason}`;
      save.disabled = false;
    }
  }

  // Deleting: folded away, and only once the channel's name is typed.
  function dangerZone() {
    const derr = h('p', { class: 'form-error', role: 'alert', id: 'delete-error' });
    const confirm = h('input', {
      id: 'delete-confirm', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'delete-hint delete-error',
      oninput: () => { btn.disabled = confirm.value.trim() !== c.name; },
      onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); if (!btn.disabled) remove(); } },
    });
    const btn = h('button', { type: 'button', class: 'btn danger', id: 'delete-channel', disabled: true, onclick: remove },
      icon('trash'), 'Delete channel');
    async function remove() {
      if (confirm.value.trim() !== c.name) return;
      btn.disabled = true;
      derr.textContent = '';
      try {
        await api('DELETE', `/channels/${enc(c.name)}`);
        gone = true;
        d.close();
        deleted(c.name);
      } catch (ex) {
        derr.textContent = `Not deleted: ${ex.reason}`;
        btn.disabled = false;
      }
    }
    return h('details', { class: 'danger-zone', id: 'danger-zone' },
      h('summary', {}, 'Delete this channel'),
      h('p', { class: 'hint', id: 'delete-hint' }, `Deletes #${c.name} for everyone: its members, its invitations and the server's backup of its messages. This cannot be undone.`),
      h('div', { class: 'field' },
        h('label', { for: 'delete-confirm' }, 'Type ', h('span', { class: 'confirm-name' }, c.name), ' to confirm'),
        confirm),
      derr,
      btn);
  }

  clear(d, form);
  counts();
  sync();
  d.addEventListener('close', () => {
    delete d.dataset.settingsFor;
    // The header is redrawn after a change: focus goes back to its button.
    if (!gone) { const b = document.getElementById('channel-settings'); if (b) b.focus(); }
  }, { once: true });
  d.showModal();
  title.focus();
}

// Closes the dialog if it is open for channel `name` (deleted or hidden
// from elsewhere meanwhile).
export function closeSettingsFor(d, name) {
  if (d && d.open && d.dataset.settingsFor === name) d.close();
}
