// The message box of the open channel: drafts per channel, the body
// limit counted in UTF-8 bytes (what the server counts; nothing is cut —
// a longer text stays, counted, and is refused before it is sent), the
// "Replying to …" bar, the @mention autocomplete, and ↑ in an empty box
// to edit my last message; files to share (the attach button, a paste;
// drops are files.js's), the box's text going with them as a caption.
// For visitors and non-members it says why they cannot write (and offers
// to join).

import { h, clear, icon } from './dom.js';
import { bareName, textOf } from './format.js';
import { excerpt } from './markdown.js';
import { MentionAutocomplete } from './mentions.js';
import { inChannel, boxBinding } from './files.js';

const utf8 = new TextEncoder();

// `s`: the app's state (current, me, node, drafts, replyTo, sendError,
// members). `on`: channelInfo(name), canWrite(channel), join(name),
// send(name, text, replyTo) → Promise, editLast() → whether it started,
// isPhone(), uploads (files.js `Uploads`).
export function renderComposer(el, s, on, force = true, focus = false) {
  const c = on.channelInfo(s.current);
  const existing = el.querySelector('textarea:not([disabled])');
  if (!force && existing && on.canWrite(c)) {
    // Keep what is being typed; only refresh the error line and the reply.
    const err = el.querySelector('.send-error');
    if (err) err.textContent = s.sendError;
    drawReplyBar(el.querySelector('.reply-slot'), s, on);
    return;
  }
  // Files are shared only from a box that can send.
  on.uploads.bind(null);
  on.uploads.draw(null);
  const errorLine = h('p', { class: 'send-error', role: 'alert', id: 'send-error' }, s.sendError);
  if (!s.current) { clear(el); return; }
  if (s.me.kind === 'visitor') {
    clear(el,
      h('div', { class: 'composer disabled' },
        h('label', { class: 'visually-hidden', for: 'composer-input' }, `Message #${s.current}`),
        h('textarea', { id: 'composer-input', rows: '1', disabled: true, placeholder: `You can't write in #${s.current}`, 'aria-describedby': 'composer-why' })),
      h('p', { class: 'composer-why', id: 'composer-why' }, icon('eye'),
        'You are visiting: visitors can read but not write. Create an account to join the conversation.'));
    return;
  }
  if (c && !on.canWrite(c)) {
    clear(el,
      h('div', { class: 'join-bar' },
        h('p', {}, `You are previewing #${s.current}, hosted by ${c.owner}.`),
        h('button', { type: 'button', class: 'btn primary', id: 'join-channel', onclick: () => on.join(c.name) }, `Join #${c.name}`)),
      errorLine);
    return;
  }
  const ta = h('textarea', {
    id: 'composer-input', rows: '1', placeholder: `Message #${s.current}`, 'aria-describedby': 'composer-hint send-error',
    enterkeyhint: 'send',
  });
  ta.value = s.drafts.get(s.current) || '';
  const limit = (s.node && s.node.max_body_len) || 4000;
  const counter = h('span', { class: 'body-count', id: 'body-count', 'aria-live': 'polite' });
  const sendBtn = h('button', { type: 'submit', class: 'send-btn', 'aria-label': 'Send message', title: 'Send (Enter)' }, icon('send'));
  const mentions = new MentionAutocomplete(ta, { members: () => s.members.get(s.current), me: s.me.username });
  const measure = () => {
    const used = utf8.encode(ta.value).length;
    const over = used > limit;
    // Shown from 90 % of the limit on, so it is there before it matters.
    counter.textContent = used >= limit * 0.9 ? `${used.toLocaleString('en')} / ${limit.toLocaleString('en')}` : '';
    counter.classList.toggle('over', over);
    ta.setAttribute('aria-invalid', over ? 'true' : 'false');
    sendBtn.disabled = over;
    return { used, over };
  };
  const grow = () => { ta.style.height = 'auto'; ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`; };
  ta.addEventListener('input', () => {
    grow();
    const { over } = measure();
    if (!over && s.sendError.startsWith('Too long')) { s.sendError = ''; errorLine.textContent = ''; }
  });
  ta.addEventListener('keydown', (e) => {
    if (mentions.keydown(e)) return;
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    } else if (e.key === 'Escape' && s.replyTo.get(s.current)) {
      e.preventDefault();
      e.stopPropagation();
      cancelReply(s, on, el);
    } else if (e.key === 'ArrowUp' && !ta.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      if (on.editLast()) e.preventDefault();
    }
  });
  ta.addEventListener('paste', (e) => { on.uploads.paste(e); });
  async function submit() {
    const text = ta.value;
    if (!text.trim()) return;
    const { used, over } = measure();
    if (over) {
      s.sendError = `Too long to send: ${used.toLocaleString('en')} bytes, the limit is ${limit.toLocaleString('en')}. Shorten it by ${(used - limit).toLocaleString('en')} bytes, or split it into several messages.`;
      errorLine.textContent = s.sendError;
      return;
    }
    const name = s.current;
    const reply = s.replyTo.get(name) || null;
    ta.value = '';
    grow();
    mentions.close();
    s.drafts.delete(name);
    s.replyTo.delete(name);
    drawReplyBar(el.querySelector('.reply-slot'), s, on);
    s.sendError = '';
    errorLine.textContent = '';
    try {
      await on.send(name, text, reply ? reply.id : null);
    } catch (e) {
      if (!ta.value) ta.value = text;
      if (reply && !s.replyTo.get(name)) s.replyTo.set(name, reply);
      if (s.current === name) drawReplyBar(el.querySelector('.reply-slot'), s, on);
      grow();
      s.sendError = `Not sent: ${e.reason}`;
      errorLine.textContent = s.sendError;
    }
  }
  const slot = h('div', { class: 'reply-slot' });
  const uploadSlot = h('div', { class: 'upload-slot', id: 'upload-slot' });
  clear(el,
    uploadSlot,
    slot,
    h('div', { class: 'composer-box' },
      mentions.list,
      h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); submit(); } },
        on.uploads.button(),
        h('label', { class: 'visually-hidden', for: 'composer-input' }, `Message #${s.current}`),
        ta, sendBtn)),
    h('div', { class: 'composer-foot' },
      h('p', { class: 'composer-hint', id: 'composer-hint' }, h('kbd', {}, 'Enter'), ' to send · ', h('kbd', {}, 'Shift'), '+', h('kbd', {}, 'Enter'), ' for a new line · ', h('kbd', {}, '@'), ' to mention · ', h('kbd', {}, '↑'), ' to edit your last'),
      counter),
    errorLine);
  drawReplyBar(slot, s, on);
  const channel = s.current;
  on.uploads.bind(boxBinding(ta, inChannel(channel), {
    measure,
    grow,
    tooLong: (used) => {
      s.sendError = `Too long to go with the file: ${used.toLocaleString('en')} bytes, the limit is ${limit.toLocaleString('en')}. Shorten it, or empty the box to share the file alone.`;
      errorLine.textContent = s.sendError;
    },
    emptied: () => s.drafts.delete(channel),
  }));
  on.uploads.draw(uploadSlot, inChannel(channel).key);
  measure();
  requestAnimationFrame(grow);
  if (focus && !on.isPhone()) ta.focus();
}

// "Replying to NAME: excerpt ×" above the box, when a reply is started.
function drawReplyBar(slot, s, on) {
  if (!slot) return;
  const r = s.replyTo.get(s.current);
  if (!r) { clear(slot); return; }
  clear(slot, h('div', { class: 'reply-bar', id: 'reply-bar', role: 'status' },
    icon('reply'),
    h('span', { class: 'reply-what' }, 'Replying to ', h('strong', {}, bareName(r.author)), ': ',
      h('span', { class: 'reply-excerpt' }, excerpt(r.body, 100))),
    h('button', {
      type: 'button', class: 'icon-btn small', id: 'reply-cancel', 'aria-label': `Cancel the reply to ${bareName(r.author)}`, title: 'Cancel reply (Escape)',
      onclick: () => cancelReply(s, on, slot.parentElement),
    }, icon('close'))));
}

function cancelReply(s, on, el) {
  s.replyTo.delete(s.current);
  drawReplyBar(el && el.querySelector('.reply-slot'), s, on);
  const ta = el && el.querySelector('#composer-input');
  if (ta) ta.focus();
}

// Starts a reply to `m` in the composer of its channel.
export function startReply(el, s, on, m) {
  s.replyTo.set(m.channel, { id: m.id, author: m.author, body: textOf(m) });
  drawReplyBar(el.querySelector('.reply-slot'), s, on);
  const ta = el.querySelector('#composer-input');
  if (ta) ta.focus();
}
