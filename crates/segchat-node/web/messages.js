// The message timeline of one channel: day separators, messages grouped
// by author within a few minutes, delivery ticks on my own messages,
// provenance (host P2P or server backup) on every message, and marked gaps
// where the host's sequence shows history is missing. Each message shows
// its body as markdown (markdown.js), the file it shares under it
// (file-view.js), the message it replies to, "(edited)", its reactions
// and its actions (message-actions.js); a deleted one shows only that it
// was deleted.

import { h, clear, icon } from './dom.js';
import {
  bareName, isVisitorName, clock, stamp, fullTime, relative, dayKey, dayLabel, STATE_LABEL, textOf,
} from './format.js';
import { avatar } from './sidebar.js';
import { parse, render, excerpt, mentionsUser } from './markdown.js';

const GROUP_MS = 5 * 60 * 1000;

// Delivery states only move forward; a `message_state` event can even
// arrive before the reply to the send that made the message.
const RANK = { pending: 0, stored: 1, backed_up: 2, refused: 3 };
const earlyStates = new Map();

function later(a, b) {
  if (!a || !a.state) return b;
  if (!b || !b.state) return a;
  return RANK[b.state] > RANK[a.state] ? b : a;
}

// Merges row `m` into channel state `c` (its `byId`), keeping the
// furthest delivery state known for it.
export function merge(c, m) {
  const old = c.byId.get(m.id);
  let st = later(old, m);
  st = later(st, earlyStates.get(m.id));
  earlyStates.delete(m.id);
  const next = old ? { ...old, ...m } : { ...m };
  if (st && st.state) { next.state = st.state; next.reason = st.reason ?? null; }
  c.byId.set(m.id, next);
}

// A state for a message not shown yet, kept (the last 1000) until it is.
export function earlyState(id, state, reason) {
  earlyStates.set(id, { state, reason });
  if (earlyStates.size > 1000) earlyStates.delete(earlyStates.keys().next().value);
}

// Oldest first, stable.
export function sortMessages(list) {
  return list.sort((a, b) => (a.ts_ms - b.ts_ms) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function provenance(m, me) {
  const own = m.author === me.username;
  if (m.source === 'host') return { short: 'P2P', text: `From the host, P2P${m.from ? ` (${m.from})` : ''}` };
  if (m.source === 'server') return { short: 'backup', text: `From the server's backup${m.from ? ` (${m.from})` : ''}` };
  return { short: own ? 'sent here' : 'local', text: 'Written on this node' };
}

function provDetail(m, me) {
  const p = provenance(m, me);
  const parts = [p.text];
  if (m.host_seq != null) parts.push(`host #${m.host_seq}`);
  if (m.server_seq != null) parts.push(`backup #${m.server_seq}`);
  parts.push(fullTime(m.ts_ms));
  parts.push(`id ${m.id}`);
  return parts.join(' · ');
}

function tick(m) {
  if (!m.state) return null;
  const label = m.state === 'refused' ? `${STATE_LABEL.refused}: ${m.reason || 'refused'}` : STATE_LABEL[m.state];
  const glyph = { pending: '◷', stored: '✓', backed_up: '✓✓', refused: '!' }[m.state] || '';
  return h('span', { class: `tick ${m.state}`, title: label, role: 'img', 'aria-label': label, dataset: { state: m.state } }, glyph);
}

function placeGaps(messages, gaps) {
  // index in `messages` -> gaps to draw just before it (or at the end).
  const at = new Map();
  for (const g of gaps || []) {
    let idx = messages.findIndex((m) => m.host_seq != null && m.host_seq > g.to_host_seq);
    if (idx < 0) idx = messages.length;
    if (!at.has(idx)) at.set(idx, []);
    at.get(idx).push(g);
  }
  return at;
}

function gapMarker(g, via) {
  const n = g.to_host_seq - g.from_host_seq + 1;
  const filling = via === 'host' || via === 'hosting';
  return h('div', { class: 'gap', role: 'note', dataset: { from: g.from_host_seq, to: g.to_host_seq } },
    h('span', { class: 'gap-line', 'aria-hidden': 'true' }),
    h('span', { class: 'gap-text' }, icon('warn'),
      `${n} message${n === 1 ? '' : 's'} missing here — `,
      filling ? 'fetching them from the host…' : 'they will fill in when the host is reachable'),
    h('span', { class: 'gap-line', 'aria-hidden': 'true' }));
}

export function renderTimeline(el, v) {
  const { messages, me, openDetails } = v;
  const gapsAt = placeGaps(messages, v.gaps);
  const out = [];
  if (!messages.length && v.emptyText) {
    clear(el, h('p', { class: 'empty-channel' }, v.emptyText));
    return;
  }
  if (v.loadedAll) {
    out.push(h('div', { class: 'channel-start' },
      h('div', { class: 'start-icon', 'aria-hidden': 'true' }, icon('hash')),
      h('h2', {}, `Welcome to #${v.channel}`),
      h('p', { class: 'muted' }, `This is the start of #${v.channel}${v.owner ? `, hosted by ${v.owner}` : ''}.`)));
  } else if (v.loading) {
    out.push(h('div', { class: 'loading-older', role: 'status' }, 'Loading older messages…'));
  } else {
    out.push(h('div', { class: 'loading-older' }, 'Scroll up for older messages'));
  }
  let prev = null;
  let lastDay = null;
  messages.forEach((m, i) => {
    const gaps = gapsAt.get(i);
    if (gaps) { gaps.forEach((g) => out.push(gapMarker(g, v.via))); prev = null; }
    const day = dayKey(m.ts_ms);
    if (day !== lastDay) {
      out.push(h('div', { class: 'day-sep', role: 'separator', 'aria-label': dayLabel(m.ts_ms) },
        h('span', {}, dayLabel(m.ts_ms))));
      lastDay = day;
      prev = null;
    }
    if (m.id === v.newFrom) {
      out.push(h('div', { class: 'new-divider', id: 'new-divider', role: 'separator', 'aria-label': 'New messages start here' }, h('span', {}, 'New')));
      prev = null;
    }
    const start = !prev || prev.author !== m.author || m.ts_ms - prev.ts_ms > GROUP_MS;
    out.push(messageEl(m, start, v));
    prev = m;
  });
  const tail = gapsAt.get(messages.length);
  if (tail) tail.forEach((g) => out.push(gapMarker(g, v.via)));
  clear(el, out);
}

// The parsed body, kept on the row while its body stays the same.
function tree(m) {
  if (m.mdBody !== m.body || !m.md) {
    Object.defineProperty(m, 'md', { value: parse(m.body), writable: true, configurable: true, enumerable: false });
    Object.defineProperty(m, 'mdBody', { value: m.body, writable: true, configurable: true, enumerable: false });
  }
  return m.md;
}

function bodyEl(m, v) {
  const acts = v.actions;
  if (m.deleted) return h('p', { class: 'body deleted' }, 'message deleted');
  if (acts && acts.isEditing(m)) return acts.editor(m);
  const body = h('div', { class: 'body' });
  body.append(render(tree(m), {
    me: v.me.username,
    spoilerKey: m.id,
    revealed: acts ? acts.revealed : null,
  }));
  const file = v.files && m.file ? v.files.render(m) : null;
  if (file) body.append(file);
  return body;
}

// The message `m` replies to, as a button that shows it. Its name is
// its content (visible text plus hidden words), so the two agree.
function quoteEl(m, v) {
  if (!m.reply_to || m.deleted) return null;
  // A row fresh from an event may come without its quote: the original,
  // if it is loaded here, says the same.
  const local = !m.quote && v.lookup ? v.lookup(m.reply_to) : null;
  const q = m.quote || (local && { id: local.id, author: local.author, body: textOf(local), deleted: !!local.deleted });
  const hidden = (text) => h('span', { class: 'visually-hidden' }, text);
  return h('button', {
    type: 'button', class: 'reply-quote', dataset: { replyTo: m.reply_to },
    title: q ? 'Show the original message' : 'The original message is not available',
    onclick: (e) => { e.stopPropagation(); if (v.onQuote) v.onQuote(m); },
  },
  icon('reply'),
  hidden('Reply to '),
  q ? h('span', { class: 'quote-author' }, bareName(q.author)) : null,
  q ? hidden(': ') : null,
  h('span', { class: `quote-text${!q || q.deleted ? ' deleted' : ''}` },
    !q ? 'original message not available' : q.deleted ? 'message deleted' : excerpt(q.body || (q.file ? `File: ${q.file}` : ''), 140)),
  q ? hidden(' (show the original)') : null);
}

function editedEl(m) {
  if (!m.edited_ms || m.deleted) return null;
  return h('span', { class: 'edited', title: `Edited ${fullTime(m.edited_ms)}` }, '(edited)');
}

// Whether `m` mentions me (as the node says, or by its rule when a row
// came without saying).
export function mentionsMe(m, me) {
  if (m.deleted || !me) return false;
  return !!m.mentions_me || (me.kind === 'user' && mentionsUser(m.body, me.username));
}

function messageEl(m, start, v) {
  const { me } = v;
  const mentioned = mentionsMe(m, me);
  const detailsOpen = v.openDetails.has(m.id);
  const acts = v.actions;
  const own = m.author === me.username;
  const p = provenance(m, me);
  const name = bareName(m.author);
  const cls = ['msg', start ? 'group-start' : 'compact', own ? 'own' : '', m.state === 'refused' ? 'is-refused' : '', m.state === 'pending' ? 'is-pending' : '',
    mentioned ? 'mentions-me' : '', m.deleted ? 'is-deleted' : '',
    acts && acts.tapped === m.id ? 'show-actions' : '', v.flash === m.id ? 'flash' : '', acts && acts.isEditing(m) ? 'is-editing' : ''].filter(Boolean).join(' ');
  const detailsId = `prov-${m.id}`;
  return h('article', {
    class: cls,
    dataset: {
      id: m.id, author: m.author, source: m.source, state: m.state || '',
      ...(m.deleted ? { deleted: 'true' } : {}), ...(m.edited_ms ? { edited: 'true' } : {}),
    },
    'aria-label': null,
    onclick: acts ? (e) => acts.tap(e, m) : null,
  },
  start ? avatar(m.author, null) : h('time', { class: 'gutter-time', datetime: new Date(m.ts_ms).toISOString(), title: fullTime(m.ts_ms) }, clock(m.ts_ms)),
  h('div', { class: 'msg-main' },
    start ? h('header', { class: 'msg-head' },
      h('span', { class: 'author' }, name),
      isVisitorName(m.author) ? h('span', { class: 'tag' }, 'visitor') : null,
      h('time', { datetime: new Date(m.ts_ms).toISOString(), title: `${fullTime(m.ts_ms)} (${relative(m.ts_ms)})` }, stamp(m.ts_ms)),
      editedEl(m))
      : h('span', { class: 'visually-hidden' }, `${name}, ${clock(m.ts_ms)}: `),
    mentioned ? h('span', { class: 'visually-hidden' }, 'Mentions you. ') : null,
    quoteEl(m, v),
    h('div', { class: 'msg-line' },
      bodyEl(m, v),
      h('span', { class: 'msg-meta' },
        start ? null : editedEl(m),
        tick(m),
        h('button', {
          type: 'button', class: `prov ${m.source}`, title: p.text,
          // Holds the short word it shows on hover, so name and text agree.
          'aria-label': `Where this message came from: ${p.short} — ${p.text}`,
          'aria-expanded': String(detailsOpen), 'aria-controls': detailsId,
          onclick: () => v.onToggleDetails(m.id),
        }, m.source === 'server' ? icon('cloud') : m.source === 'host' ? icon('link') : icon('info'), h('span', {}, p.short)))),
    acts ? acts.reactions(m) : null,
    m.state === 'refused' ? h('p', { class: 'refused-line', role: 'note' }, icon('warn'), `Not delivered: ${m.reason || 'refused'}`) : null,
    detailsOpen ? h('p', { class: 'prov-detail', id: detailsId }, provDetail(m, me)) : null),
  acts && !m.deleted ? acts.bar(m) : null);
}
