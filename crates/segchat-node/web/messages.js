// The message timeline of one channel: day separators, messages grouped
// by author within a few minutes, delivery ticks on my own messages,
// provenance (host P2P or server backup) on every message, and marked gaps
// where the host's sequence shows history is missing.

import { h, clear, icon } from './dom.js';
import {
  bareName, isVisitorName, clock, stamp, fullTime, relative, dayKey, dayLabel, STATE_LABEL,
} from './format.js';
import { avatar } from './sidebar.js';

const GROUP_MS = 5 * 60 * 1000;

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
    out.push(messageEl(m, me, start, openDetails.has(m.id), v.onToggleDetails));
    prev = m;
  });
  const tail = gapsAt.get(messages.length);
  if (tail) tail.forEach((g) => out.push(gapMarker(g, v.via)));
  clear(el, out);
}

function messageEl(m, me, start, detailsOpen, onToggle) {
  const own = m.author === me.username;
  const p = provenance(m, me);
  const name = bareName(m.author);
  const cls = ['msg', start ? 'group-start' : 'compact', own ? 'own' : '', m.state === 'refused' ? 'is-refused' : '', m.state === 'pending' ? 'is-pending' : ''].filter(Boolean).join(' ');
  const detailsId = `prov-${m.id}`;
  return h('article', {
    class: cls,
    dataset: { id: m.id, author: m.author, source: m.source, state: m.state || '' },
    'aria-label': null,
  },
  start ? avatar(m.author, null) : h('time', { class: 'gutter-time', datetime: new Date(m.ts_ms).toISOString(), title: fullTime(m.ts_ms) }, clock(m.ts_ms)),
  h('div', { class: 'msg-main' },
    start ? h('header', { class: 'msg-head' },
      h('span', { class: 'author' }, name),
      isVisitorName(m.author) ? h('span', { class: 'tag' }, 'visitor') : null,
      h('time', { datetime: new Date(m.ts_ms).toISOString(), title: `${fullTime(m.ts_ms)} (${relative(m.ts_ms)})` }, stamp(m.ts_ms)))
      : h('span', { class: 'visually-hidden' }, `${name}, ${clock(m.ts_ms)}: `),
    h('div', { class: 'msg-line' },
      h('p', { class: 'body' }, m.body),
      h('span', { class: 'msg-meta' },
        tick(m),
        h('button', {
          type: 'button', class: `prov ${m.source}`, title: p.text,
          'aria-label': `Where this message came from: ${p.text}`,
          'aria-expanded': String(detailsOpen), 'aria-controls': detailsId,
          onclick: () => onToggle(m.id),
        }, m.source === 'server' ? icon('cloud') : m.source === 'host' ? icon('link') : icon('info'), h('span', {}, p.short)))),
    m.state === 'refused' ? h('p', { class: 'refused-line', role: 'note' }, icon('warn'), `Not delivered: ${m.reason || 'refused'}`) : null,
    detailsOpen ? h('p', { class: 'prov-detail', id: detailsId }, provDetail(m, me)) : null));
}
