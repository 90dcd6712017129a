// Writing a direct message: the message box of an open conversation
// (Enter sends, Shift+Enter a new line; files attached, pasted or
// dropped go to the conversation, encrypted end to end by the node
// (files.js); the limit counted in characters, as the node counts; a
// refused text stays in the box with the reason;
// the "Replying to …" bar above it, Escape cancels; ↑ in the empty box
// edits my last message), and the "Write a direct message" dialog that
// opens one by username.

import { h, clear, icon } from './dom.js';
import { displayName } from './format.js';
import { excerpt } from './markdown.js';
import { inDm, boxBinding } from './files.js';

// Usernames as the server checks them (segchat-proto validate_username).
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$/;

// Draws the box into `el` for `v`: { name, title, limit, draft, error,
// reply, focus }. `on`: send(text, replyTo) → Promise (rejects with an
// ApiError); error(text), draft(text) and setReply(reply or null) keep
// those for the conversation, reply() says which it is; editLast() →
// whether an edit started; uploads (files.js `Uploads`), which takes the
// files attached, pasted or dropped here.
export function renderDmComposer(el, v, on) {
  const { name, title, limit } = v;
  const errorLine = h('p', { class: 'send-error', role: 'alert', id: 'send-error' }, v.error);
  const ta = h('textarea', {
    id: 'composer-input', rows: '1', placeholder: `Message @${title}`, 'aria-describedby': 'composer-hint send-error',
    enterkeyhint: 'send', dataset: { dm: name },
  });
  ta.value = v.draft;
  const counter = h('span', { class: 'body-count', id: 'body-count', 'aria-live': 'polite' });
  const sendBtn = h('button', { type: 'submit', class: 'send-btn', 'aria-label': 'Send message', title: 'Send (Enter)' }, icon('send'));
  const setError = (text) => { on.error(text); errorLine.textContent = text; };
  const measure = () => {
    const used = [...ta.value].length;
    const over = used > limit;
    // Shown from 90 % of the limit on, so it is there before it matters.
    counter.textContent = used >= limit * 0.9 ? `${used.toLocaleString('en')} / ${limit.toLocaleString('en')}` : '';
    counter.classList.toggle('over', over);
    ta.setAttribute('aria-invalid', over ? 'true' : 'false');
    sendBtn.disabled = over;
    return { used, over };
  };
  const grow = () => { ta.style.height = 'auto'; ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`; };
  const submit = async () => {
    const text = ta.value;
    if (!text.trim()) return;
    const { used, over } = measure();
    if (over) {
      setError(`Too long to send: ${used.toLocaleString('en')} characters, the limit is ${limit.toLocaleString('en')}. Shorten it, or split it into several messages.`);
      return;
    }
    const answering = on.reply();
    ta.value = '';
    grow();
    measure();
    on.draft('');
    setError('');
    if (answering) { on.setReply(null); drawDmReply(el, null, on); }
    try {
      await on.send(text, answering ? answering.id : null);
    } catch (e) {
      const why = `Not sent: ${e.status === 404 ? `${e.reason}. Check the spelling of their username.` : e.reason}`;
      on.error(why);
      // The box may have been drawn anew meanwhile, or be another
      // conversation's: the text goes back where this one's is kept.
      const box = el.querySelector('textarea[data-dm]');
      // The reply it was goes back with it, unless another was started.
      if (answering && !on.reply()) on.setReply(answering);
      if (box && box.dataset.dm === name) {
        if (!box.value) box.value = text;
        drawDmReply(el, on.reply(), on);
        box.dispatchEvent(new Event('input'));
        const line = el.querySelector('.send-error');
        if (line) line.textContent = why;
      } else {
        on.draft(text);
      }
    }
  };
  ta.addEventListener('input', () => {
    grow();
    const { over } = measure();
    if (!over && errorLine.textContent.startsWith('Too long')) setError('');
  });
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    } else if (e.key === 'Escape' && on.reply()) {
      e.preventDefault();
      e.stopPropagation();
      on.setReply(null);
      drawDmReply(el, null, on);
    } else if (e.key === 'ArrowUp' && !ta.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      if (on.editLast()) e.preventDefault();
    }
  });
  ta.addEventListener('paste', (e) => { on.uploads.paste(e); });
  const uploadSlot = h('div', { class: 'upload-slot', id: 'upload-slot' });
  clear(el,
    uploadSlot,
    h('div', { class: 'reply-slot' }),
    h('div', { class: 'composer-box' },
      h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); submit(); } },
        on.uploads.button(),
        h('label', { class: 'visually-hidden', for: 'composer-input' }, `Message @${title}`),
        ta, sendBtn)),
    h('div', { class: 'composer-foot' },
      h('p', { class: 'composer-hint', id: 'composer-hint' }, h('kbd', {}, 'Enter'), ' to send · ', h('kbd', {}, 'Shift'), '+', h('kbd', {}, 'Enter'), ' for a new line · ', h('kbd', {}, '↑'), ' to edit your last · end-to-end encrypted'),
      counter),
    errorLine);
  drawDmReply(el, v.reply, on);
  // Files attached, pasted or dropped here go to this conversation,
  // encrypted end to end; the box's text goes with the first.
  const where = inDm(name, title);
  on.uploads.bind(boxBinding(ta, where, {
    measure,
    grow,
    tooLong: (used) => setError(`Too long to go with the file: ${used.toLocaleString('en')} characters, the limit is ${limit.toLocaleString('en')}. Shorten it, or empty the box to share the file alone.`),
    emptied: () => on.draft(''),
  }));
  on.uploads.draw(uploadSlot, where.key);
  measure();
  requestAnimationFrame(grow);
  if (v.focus) ta.focus();
}

// Above the box in `el`: which message the next one answers (`r`: { id,
// author, body }), with a button that cancels it; nothing when `r` is
// null.
export function drawDmReply(el, r, on) {
  const slot = el.querySelector('.reply-slot');
  if (!slot) return;
  if (!r) { slot.replaceChildren(); return; }
  const author = displayName(r.author);
  const cancel = () => {
    on.setReply(null);
    drawDmReply(el, null, on);
    const box = el.querySelector('#composer-input');
    if (box) box.focus();
  };
  slot.replaceChildren(h('div', { class: 'reply-bar', id: 'reply-bar', role: 'status' },
    icon('reply'),
    h('span', { class: 'reply-what' },
      'Replying to ', h('strong', {}, author), ': ', h('span', { class: 'reply-excerpt' }, excerpt(r.body, 100))),
    h('button', {
      type: 'button', id: 'reply-cancel', class: 'icon-btn small', title: 'Cancel reply (Escape)',
      'aria-label': `Cancel the reply to ${author}`, onclick: cancel,
    }, icon('close'))));
}

// Opens the dialog in `d`. `v`: { me (my username), friends (usernames
// offered as one types), open(name) }.
export function openNewDmDialog(d, v) {
  d.setAttribute('aria-labelledby', 'dm-new-title');
  const err = h('p', { class: 'form-error', role: 'alert', id: 'dm-new-error' });
  const input = h('input', {
    id: 'dm-new-name', name: 'username', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '32',
    placeholder: 'username', list: v.friends.length ? 'dm-friends' : null, 'aria-describedby': 'dm-new-hint dm-new-error',
  });
  const submit = (e) => {
    e.preventDefault();
    const name = input.value.trim().replace(/^@/, '');
    if (!USERNAME.test(name)) {
      err.textContent = 'A username is 3 to 32 letters, digits, “_”, “-” or “.”, and starts with a letter or a digit.';
      return;
    }
    if (name.toLowerCase() === v.me.toLowerCase()) { err.textContent = 'That is you: write to someone else.'; return; }
    d.close();
    v.open(name);
  };
  clear(d, h('form', { method: 'dialog', class: 'dialog-form', onsubmit: submit },
    h('header', { class: 'dialog-head' },
      h('h2', { id: 'dm-new-title' }, 'Write a direct message'),
      h('p', { class: 'muted' }, 'End-to-end encrypted: the server carries it sealed, only the two of you can read it.')),
    h('div', { class: 'field' },
      h('label', { for: 'dm-new-name' }, 'Username'),
      input,
      v.friends.length ? h('datalist', { id: 'dm-friends' }, v.friends.map((f) => h('option', { value: f }))) : null,
      h('p', { class: 'hint', id: 'dm-new-hint' }, 'Their username, as they signed up with it.')),
    err,
    h('footer', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn ghost', onclick: () => d.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn primary', id: 'dm-new-open' }, 'Open conversation'))));
  d.showModal();
  input.focus();
}
