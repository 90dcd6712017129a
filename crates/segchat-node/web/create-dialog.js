// The "Create a channel" dialog: a name (turned into a valid channel
// name as it is typed, and shown), who can see it, and whether visitors
// may read it.

import { api } from './api.js';
import { h, clear, icon } from './dom.js';

// "General Chat!" → "general-chat": lower case, accents dropped, every run
// of anything else one '-', none at the ends, at most 32 bytes.
export function channelSlug(text) {
  return text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-').replace(/-{2,}/g, '-').replace(/^-+|-+$/g, '')
    .slice(0, 32).replace(/-+$/, '');
}

// Opens the dialog in `d`; `created(name)` once the node made the channel.
export function openCreateDialog(d, created) {
  d.setAttribute('aria-labelledby', 'create-title');
  const err = h('p', { class: 'form-error', role: 'alert', id: 'create-error' });
  const visitors = h('input', { type: 'checkbox', id: 'new-visitors', name: 'allow_visitors', checked: true });
  const vis = (value, title, hint, checked) => h('label', { class: 'radio-card' },
    h('input', { type: 'radio', name: 'visibility', value, checked, onchange: sync }),
    h('span', { class: 'radio-text' }, h('strong', {}, title), h('small', {}, hint)));
  // Channel names are lower-case letters, digits, '-' and '_': what is
  // typed is turned into one ("General Chat" → general-chat) and shown.
  const nameHint = h('p', { class: 'hint', id: 'new-name-hint' }, 'Lower-case letters, digits, “-” and “_”, up to 32.');
  function preview() {
    const typed = d.querySelector('#new-name').value;
    const slug = channelSlug(typed);
    nameHint.textContent = typed && slug !== typed
      ? (slug ? `Will be created as #${slug}` : 'Use letters or digits.')
      : 'Lower-case letters, digits, “-” and “_”, up to 32.';
  }
  function sync() {
    const pub = d.querySelector('input[name=visibility]:checked').value === 'public';
    visitors.disabled = !pub;
    if (!pub) visitors.checked = false;
  }
  const form = h('form', { method: 'dialog', class: 'dialog-form', onsubmit: submit },
    h('header', { class: 'dialog-head' },
      h('h2', { id: 'create-title' }, 'Create a channel'),
      h('p', { class: 'muted' }, 'Your node hosts it: messages go peer-to-peer, and the server keeps a backup.')),
    h('div', { class: 'field' },
      h('label', { for: 'new-name' }, 'Channel name'),
      h('div', { class: 'input-prefix' }, icon('hash'),
        h('input', { id: 'new-name', name: 'name', required: true, maxlength: '48', autocomplete: 'off', placeholder: 'new-channel', 'aria-describedby': 'new-name-hint create-error', oninput: preview }))),
    nameHint,
    h('fieldset', { class: 'field' },
      h('legend', {}, 'Who can see it'),
      vis('public', 'Public', 'Listed to everyone; anyone with an account can join.', true),
      vis('members_only', 'Members only', 'Listed to registered users; only members read and write.', false),
      vis('private', 'Private', 'Only people you invite can see it.', false)),
    h('label', { class: 'check' }, visitors,
      h('span', {}, h('strong', {}, 'Allow visitors'), h('small', {}, 'People without an account can read (never write).'))),
    err,
    h('footer', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn ghost', onclick: () => d.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn primary', id: 'create-submit' }, 'Create channel')));
  async function submit(e) {
    e.preventDefault();
    const data = new FormData(form);
    const name = channelSlug(String(data.get('name') || ''));
    if (!name) { err.textContent = 'A channel name needs a letter or a digit.'; return; }
    const btn = form.querySelector('#create-submit');
    btn.disabled = true;
    try {
      await api('POST', '/channels', {
        name, visibility: data.get('visibility'), allow_visitors: visitors.checked,
      });
      d.close();
      await created(name);
    } catch (ex) {
      err.textContent = ex.reason;
      btn.disabled = false;
    }
  }
  clear(d, form);
  d.showModal();
  d.querySelector('#new-name').focus();
}
