// What the timeline of an open direct-message conversation holds (dms.js
// keeps the rows and draws it): the beginning of the conversation (or
// that older messages load on scrolling up), day separators, messages
// grouped by sender within a few minutes. Each message shows who wrote
// it and when, the message it replies to, its text as markdown or the
// inline editor, "(edited)", the delivery state of my own (sending,
// sent, delivered, read, not delivered), its reactions and its toolbar.
// Reply, react, edit and delete are channels' (message-actions.js,
// reactions.js), given rows in their shape by `asChannelRow`.

import { h, icon } from './dom.js';
import { displayName, clock, stamp, fullTime, relative, dayKey, dayLabel } from './format.js';
import { avatar } from './sidebar.js';
import { render, excerpt } from './markdown.js';

const GROUP_MS = 5 * 60 * 1000;

// What my own message's state shows: a glyph, and its words.
const STATE = {
  pending: ['◷', 'Sending…'],
  sent: ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
  failed: ['!', 'Not delivered'],
};

// A DM row as message-actions.js and file-view.js read a channel's: its
// sender as `author`, its text as `body`, its conversation as `channel`
// (and `dm`, so a file is fetched as a direct message's).
export function asChannelRow(m) {
  return { ...m, author: m.sender, body: m.text, channel: m.conversation, dm: true };
}

// The quoted original of a reply, as the node sent it or, when a live
// row came without it, as this timeline has it.
function quoted(m, v) {
  if (m.quote) return m.quote;
  const o = v.lookup(m.reply_to);
  return o ? { id: o.id, author: o.sender, body: o.text, deleted: !!o.deleted, file: o.file ? o.file.name : null } : null;
}

// Above a reply: a button that names the original (author and the start
// of its text) and shows it.
function replyQuote(m, v) {
  if (!m.reply_to || m.deleted) return null;
  const q = quoted(m, v);
  const said = q ? (q.deleted ? 'message deleted' : excerpt(q.body || (q.file ? `File: ${q.file}` : ''), 140)) : 'original message not available';
  const sr = (text) => h('span', { class: 'visually-hidden' }, text);
  return h('button', {
    type: 'button',
    class: 'reply-quote',
    title: q ? 'Show the original message' : 'The original message is not available',
    dataset: { replyTo: m.reply_to },
    onclick: (e) => { e.stopPropagation(); v.onQuote(m.reply_to); },
  },
  icon('reply'),
  sr('Reply to '),
  q && [h('span', { class: 'quote-author' }, displayName(q.author)), sr(': ')],
  h('span', { class: q && !q.deleted ? 'quote-text' : 'quote-text deleted' }, said),
  q && sr(' (show the original)'));
}

function editedMark(m) {
  return m.edited_ms && !m.deleted
    ? h('span', { class: 'edited', title: `Edited ${fullTime(m.edited_ms)}` }, '(edited)')
    : null;
}

// The text (markdown), the editor in its place, or that it was deleted;
// the file it shares under it (file-view.js).
function textEl(m, row, v) {
  if (m.deleted) return h('p', { class: 'body deleted' }, 'message deleted');
  if (v.acts.isEditing(row)) return v.acts.editor(row);
  const body = h('div', { class: 'body' });
  if (m.text) body.append(render(v.tree(m), { me: v.me.username, spoilerKey: m.id, revealed: v.acts.revealed }));
  const file = v.files && m.file ? v.files.render(row) : null;
  if (file) body.append(file);
  return body;
}

// The state of my own message `m`: a glyph (and, on my newest message,
// the word), named for screen readers; `path` in its tooltip.
function stateEl(m, word) {
  const [glyph, label] = STATE[m.state] || ['', m.state];
  const full = m.state === 'failed' && m.error ? `${label}: ${m.error}` : label;
  const via = m.path === 'p2p' ? ', directly' : m.path === 'server' ? ', through the server' : '';
  return h('span', { class: `tick dm-state ${m.state}`, role: 'img', 'aria-label': full, title: `${full}${via}`, dataset: { state: m.state } },
    h('span', { class: 'state-glyph' }, glyph),
    word && m.state !== 'failed' ? h('span', { class: 'state-word' }, label) : null);
}

// Beside the text: "(edited)" (when no header shows it) and my tick.
function meta(...parts) {
  return parts.some(Boolean) ? h('span', { class: 'msg-meta' }, parts) : null;
}

// The elements of the timeline: `messages` oldest first; `v`: { name,
// title (of the conversation), state ({ loaded, loadedAll, loading }), me,
// acts (a MessageActions), newestOwn (my newest message's id), tree(m)
// (its parsed text), lookup(id) (a loaded row), onQuote(id), flash (the
// id being pointed out) }.
export function dmTimeline(messages, v) {
  const { name, title, state } = v;
  const out = [];
  if (!state.loaded) {
    out.push(h('p', { class: 'empty-channel' }, 'Loading…'));
  } else if (state.loadedAll) {
    out.push(h('div', { class: 'channel-start dm-start' },
      avatar(name.split(',')[0], null, 'lg'),
      h('h2', {}, title),
      h('p', { class: 'muted' }, `This is the beginning of your direct messages with ${title}. They are end-to-end encrypted: only you and ${name.includes(',') ? 'they' : title} can read them.`)));
  } else if (state.loading) {
    out.push(h('div', { class: 'loading-older', role: 'status' }, 'Loading older messages…'));
  } else {
    out.push(h('div', { class: 'loading-older' }, 'Scroll up for older messages'));
  }
  let prev = null;
  let lastDay = null;
  for (const m of messages) {
    const day = dayKey(m.sent_at_ms);
    if (day !== lastDay) {
      out.push(h('div', { class: 'day-sep', role: 'separator', 'aria-label': dayLabel(m.sent_at_ms) }, h('span', {}, dayLabel(m.sent_at_ms))));
      lastDay = day;
      prev = null;
    }
    const start = !prev || prev.sender !== m.sender || m.sent_at_ms - prev.sent_at_ms > GROUP_MS;
    out.push(messageEl(m, start, v));
    prev = m;
  }
  return out;
}

// Message `m`; `start`: it begins a group (avatar and name shown).
function messageEl(m, start, v) {
  const row = asChannelRow(m);
  const { acts } = v;
  const own = m.sender === v.me.username;
  const name = displayName(m.sender);
  const when = new Date(m.sent_at_ms).toISOString();
  const editing = acts.isEditing(row);
  const cls = ['msg', 'dm-msg', start ? 'group-start' : 'compact', own ? 'own' : '',
    m.state === 'pending' ? 'is-pending' : '', m.state === 'failed' ? 'is-refused' : '', m.deleted ? 'is-deleted' : '',
    acts.tapped === m.id ? 'show-actions' : '', v.flash === m.id ? 'flash' : '', editing ? 'is-editing' : ''].filter(Boolean).join(' ');
  return h('article', {
    class: cls,
    dataset: {
      id: m.id, author: m.sender, state: m.state,
      ...(m.deleted ? { deleted: 'true' } : {}), ...(m.edited_ms ? { edited: 'true' } : {}),
    },
    onclick: (e) => acts.tap(e, row),
  },
  start ? avatar(m.sender, null) : h('time', { class: 'gutter-time', datetime: when, title: fullTime(m.sent_at_ms) }, clock(m.sent_at_ms)),
  h('div', { class: 'msg-main' },
    start ? h('header', { class: 'msg-head' },
      h('span', { class: 'author' }, name),
      h('time', { datetime: when, title: `${fullTime(m.sent_at_ms)} (${relative(m.sent_at_ms)})` }, stamp(m.sent_at_ms)),
      editedMark(m))
      : h('span', { class: 'visually-hidden' }, `${name}, ${clock(m.sent_at_ms)}: `),
    replyQuote(m, v),
    h('div', { class: 'msg-line' },
      textEl(m, row, v),
      meta(start ? null : editedMark(m), own ? stateEl(m, v.newestOwn === m.id) : null)),
    acts.reactions(row),
    m.state === 'failed' ? h('p', { class: 'refused-line', role: 'note' }, icon('warn'), `Not delivered: ${m.error || 'refused'}`) : null),
  m.deleted ? null : acts.bar(row));
}
