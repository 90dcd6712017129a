// segchat web UI: state, layout and the wiring to the node's API and its
// event WebSocket. Rendering of the sidebar, the timeline and the sign-in
// screen lives in their own modules. Everything updates from pushed events;
// nothing polls.

import { api, enc, connectEvents } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { displayName, PRESENCE_LABEL, VISIBILITY_LABEL, VIA_LABEL } from './format.js';
import { renderSignIn, renderNoToken } from './signin.js';
import { renderSidebar, groupChannels, hostState, avatar } from './sidebar.js';
import { renderTimeline, sortMessages } from './messages.js';
import { StreamArea } from './streams.js';
import { openInviteDialog, openChannelInvite } from './invite.js';
import { roveTimeline, timelineKeys } from './timeline-keys.js';
import { SearchPanel } from './search.js';

const root = document.getElementById('app');
const phone = window.matchMedia('(max-width: 768px)');

const s = {
  node: null,
  me: null,
  channels: [],
  cached: false,
  unread: {},
  // Per channel with unread messages, the id of the first (GET /unread).
  firstUnread: {},
  links: {},
  current: null,
  serverConnected: false,
  // Whether this tab's own node answers (its event socket is open).
  nodeUp: true,
  chans: new Map(),
  members: new Map(),
  openDetails: new Set(),
  drafts: new Map(),
  statusMenuOpen: false,
  sidebarOpen: false,
  panel: phone.matches ? null : 'members',
  sendError: '',
  signIn: null,
};

let ui = null;
let events = null;
let streams = null;
// The search panel's state and drawing (search.js).
const search = new SearchPanel({
  current: () => s.current,
  jump: (m) => jumpTo(m),
  close: () => togglePanel('search'),
  changed: () => { if (s.panel === 'search') renderPanel(); },
});

// ---------------------------------------------------------------- boot

async function boot() {
  if (location.hash === '#token-refused') {
    history.replaceState(null, '', '/');
    renderNoToken(root, true);
    return;
  }
  try {
    s.node = await api('GET', '/node');
  } catch (e) {
    if (e.status === 401) renderNoToken(root, false);
    else fatal(e.reason);
    return;
  }
  s.serverConnected = s.node.server_connected;
  events = connectEvents({ onEvent, onOpen: () => resync(), onClose: nodeGone });
  if (s.node.session) enterApp(s.node.session);
  else showSignIn();
}

function fatal(reason) {
  root.className = 'auth';
  clear(root, h('div', { class: 'auth-screen' }, h('main', { class: 'auth-card' },
    h('h1', {}, 'Something went wrong'), h('p', { role: 'alert' }, reason))));
}

function showSignIn(notice) {
  s.me = null;
  ui = null;
  document.title = 'Sign in — segchat';
  s.signIn = renderSignIn(root, {
    node: s.node,
    onSignedIn: (session) => { s.signIn = null; enterApp(session); },
  });
  if (notice) s.signIn.showError(notice);
}

// ---------------------------------------------------------------- state helpers

function chan(name) {
  if (!s.chans.has(name)) {
    s.chans.set(name, { byId: new Map(), gaps: [], nextBefore: null, loadedAll: false, loading: false, initialized: false });
  }
  return s.chans.get(name);
}

function channelInfo(name) {
  return s.channels.find((c) => c.name === name) || null;
}

function isMine(c) {
  return c && s.me.kind === 'user' && c.owner === s.me.username;
}

function canRead(c) {
  return c && (isMine(c) || c.my_role || s.me.kind === 'visitor');
}

function canWrite(c) {
  return c && s.me.kind === 'user' && (isMine(c) || c.my_role);
}

// Why this user cannot go live (or write) in a channel.
function writeReason(c) {
  if (!c) return 'Pick a channel first.';
  if (s.me.kind === 'visitor') return 'Visitors cannot go live; register an account to do that.';
  if (!canWrite(c)) return `Join #${c.name} to go live in it.`;
  return '';
}

// Delivery states only move forward; a `message_state` event can even
// arrive before the reply to the send that made the message.
const RANK = { pending: 0, stored: 1, backed_up: 2, refused: 3 };
const earlyStates = new Map();

function later(a, b) {
  if (!a || !a.state) return b;
  if (!b || !b.state) return a;
  return RANK[b.state] > RANK[a.state] ? b : a;
}

function merge(c, m) {
  const old = c.byId.get(m.id);
  let st = later(old, m);
  st = later(st, earlyStates.get(m.id));
  earlyStates.delete(m.id);
  const next = old ? { ...old, ...m } : { ...m };
  if (st && st.state) { next.state = st.state; next.reason = st.reason ?? null; }
  c.byId.set(m.id, next);
}

function debounce(fn, ms) {
  const timers = new Map();
  return (key = '') => {
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => { timers.delete(key); fn(key); }, ms));
  };
}

// ---------------------------------------------------------------- layout

function enterApp(session) {
  s.me = session;
  root.className = 'app';
  root.removeAttribute('aria-busy');
  const sidebar = h('aside', { class: 'sidebar', id: 'sidebar', 'aria-label': 'Channels and your status' });
  const headMain = h('div', { class: 'head-main' });
  const searchInput = h('input', {
    type: 'search', id: 'search-input', placeholder: 'Search messages', autocomplete: 'off',
    'aria-label': 'Search all messages',
  });
  const searchForm = h('form', { class: 'search', role: 'search', onsubmit: (e) => { e.preventDefault(); runSearch(searchInput.value); } },
    icon('search'), searchInput);
  const membersBtn = h('button', {
    type: 'button', class: 'icon-btn', id: 'members-toggle', 'aria-label': 'Show members', title: 'Members',
    'aria-controls': 'panel', onclick: () => togglePanel('members'),
  }, icon('users'));
  const header = h('header', { class: 'chat-head' },
    h('button', { type: 'button', class: 'icon-btn only-phone', id: 'sidebar-toggle', 'aria-label': 'Open channel list', 'aria-controls': 'sidebar', onclick: () => { s.sidebarOpen = true; renderLayout(); } }, icon('menu')),
    headMain, searchForm, membersBtn);
  const banners = h('div', { class: 'banners', id: 'banners' });
  const timeline = h('div', { class: 'timeline', id: 'timeline', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: '0' });
  timelineKeys(timeline, {
    setActive: (id) => { if (s.current) chan(s.current).activeMsg = id; },
    older: () => loadOlder(),
    toComposer: focusComposer,
  });
  const jump = h('button', { type: 'button', class: 'jump', hidden: true, onclick: () => { timeline.scrollTop = timeline.scrollHeight; jump.hidden = true; } }, 'New messages ↓');
  const newBar = h('div', { class: 'new-bar', id: 'new-bar', hidden: true, role: 'status' });
  const composer = h('div', { class: 'composer-wrap', id: 'composer' });
  const streamEl = h('section', { class: 'stream-area', id: 'stream-area', 'aria-label': 'Livestream', hidden: true });
  const main = h('main', { class: 'chat', id: 'chat', 'aria-label': 'Conversation' },
    header, banners, streamEl, h('div', { class: 'timeline-wrap' }, newBar, timeline, jump), composer);
  const panel = h('aside', { class: 'panel', id: 'panel' });
  const backdrop = h('div', { class: 'backdrop', 'aria-hidden': 'true', onclick: closeOverlays });
  const dialog = h('dialog', { class: 'dialog', id: 'create-dialog', 'aria-labelledby': 'create-title' });
  const skip = h('a', { class: 'skip-link', href: '#composer-input', onclick: (e) => { e.preventDefault(); focusComposer(); } }, 'Skip to the message box');
  const layout = h('div', { class: 'layout' }, skip, sidebar, main, panel, backdrop, dialog);
  clear(root, layout);
  ui = { layout, sidebar, main, headMain, searchInput, membersBtn, banners, timeline, jump, newBar, composer, panel, dialog };
  if (streams) { streams.stopOwn(); streams.unwatch(); }
  streams = new StreamArea(streamEl, () => {
    const c = channelInfo(s.current);
    return { channel: s.current, canWrite: !!canWrite(c), writeReason: writeReason(c), me: s.me };
  }, () => { renderHeader(); renderSide(); });
  s.isLive = (name) => !!streams && streams.liveIn(name).length > 0;

  timeline.addEventListener('scroll', () => {
    if (timeline.scrollTop < 150) loadOlder();
    if (atBottom()) jump.hidden = true;
  });
  renderAll();
  refreshAll().then(() => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    const first = channelInfo(wanted) ? wanted : pickDefault();
    // Ready to type: the message box has focus (not on a phone, where it
    // would open the keyboard over the conversation).
    if (first) openChannel(first);
  });
}

function pickDefault() {
  const g = groupChannels(s.channels, s.me);
  const c = g.hosted[0] || g.joined[0] || g.discover[0];
  return c ? c.name : null;
}

function renderAll() {
  if (!ui) return;
  renderLayout();
  renderSide();
  renderHeader();
  renderBanners();
  renderComposer();
  drawTimeline();
  renderPanel();
}

function renderLayout() {
  if (!ui) return;
  ui.layout.classList.toggle('sidebar-open', s.sidebarOpen);
  ui.layout.classList.toggle('panel-open', !!s.panel);
  ui.layout.dataset.panel = s.panel || '';
  // On a phone the sidebar and the panel cover the conversation: what is
  // underneath takes no focus and no pointer until they close.
  ui.main.inert = phone.matches && (s.sidebarOpen || !!s.panel);
  ui.membersBtn.setAttribute('aria-pressed', String(s.panel === 'members'));
  ui.membersBtn.setAttribute('aria-label', s.panel === 'members' ? 'Hide members' : 'Show members');
  const total = Object.values(s.unread).reduce((a, b) => a + b, 0);
  document.title = `${total ? `(${total}) ` : ''}${s.current ? `#${s.current} — ` : ''}segchat`;
}

function closeOverlays() {
  s.sidebarOpen = false;
  s.statusMenuOpen = false;
  if (phone.matches) s.panel = null;
  renderLayout();
  renderSide();
}

function renderSide() {
  if (!ui) return;
  renderSidebar(ui.sidebar, s, {
    open: (name) => openChannel(name),
    create: openCreateDialog,
    invite: () => openInviteDialog(ui.dialog, s.node),
    closeSidebar: () => { s.sidebarOpen = false; renderLayout(); },
    toggleStatusMenu: () => {
      s.statusMenuOpen = !s.statusMenuOpen;
      renderSide();
      const target = s.statusMenuOpen ? ui.sidebar.querySelector('[role=menuitemradio][aria-checked=true]') : document.getElementById('status-button');
      if (target) target.focus();
    },
    setStatus,
    signOut,
  });
  renderLayout();
}

function renderHeader() {
  if (!ui) return;
  const c = channelInfo(s.current);
  if (!s.current) {
    clear(ui.headMain, h('h1', { class: 'chan-title', id: 'chan-title' }, 'segchat'));
    return;
  }
  const via = isMine(c) ? 'hosting' : s.links[s.current];
  const hs = c ? hostState(c, s.me, s.links) : null;
  const chips = [];
  if (c) {
    const who = `${VISIBILITY_LABEL[c.visibility]}${c.allow_visitors ? ', visitors welcome' : ''}`;
    chips.push(h('span', { class: 'chip', title: `${who}: who can see and join this channel` },
      icon(c.visibility === 'public' ? 'globe' : 'lock'),
      h('span', { class: 'chip-text' }, VISIBILITY_LABEL[c.visibility],
        c.allow_visitors ? h('span', { class: 'chip-more' }, ' · visitors welcome') : '')));
  }
  if (via) {
    chips.push(h('span', { class: `chip link ${via}`, id: 'link-state', title: VIA_LABEL[via], dataset: { via } },
      h('span', { class: `dot ${hs ? hs.cls : ''}`, 'aria-hidden': 'true' }),
      h('span', { class: 'link-long' },
        { hosting: 'hosting', host: 'P2P to host', server: 'server backup', offline: 'offline' }[via]),
      h('span', { class: 'link-short', 'aria-hidden': 'true' },
        { hosting: 'host', host: 'P2P', server: 'backup', offline: 'offline' }[via])));
  }
  const actions = [];
  if (c && streams && !(streams.own && streams.own.channel === c.name)) {
    const why = writeReason(c);
    actions.push(h('button', {
      type: 'button', class: 'btn ghost small', id: 'go-live', disabled: !!why || !!streams.own,
      title: why || (streams.own ? `You are live in #${streams.own.channel}; stop that stream first.` : 'Stream your camera to this channel'),
      'aria-label': why ? `Go live (unavailable: ${why})` : 'Go live',
      onclick: () => streams.openSetup(c.name),
    }, icon('video'), h('span', { class: 'hide-phone' }, 'Go live')));
  }
  if (c && c.visibility === 'private' && (isMine(c) || c.my_role === 'moderator')) {
    actions.push(h('button', {
      type: 'button', class: 'btn ghost small', id: 'invite-to-channel', 'aria-label': `Invite people to #${c.name}`, title: `Invite people to #${c.name}`,
      onclick: () => openChannelInvite(ui.dialog, c.name),
    }, icon('users'), h('span', { class: 'hide-phone' }, 'Invite')));
  }
  if (c && c.my_role && !isMine(c)) {
    actions.push(h('button', { type: 'button', class: 'btn ghost small', id: 'leave-channel', 'aria-label': `Leave #${c.name}`, title: `Leave #${c.name}`, onclick: () => leaveChannel(c.name) }, icon('leave'), h('span', { class: 'hide-phone' }, 'Leave')));
  }
  clear(ui.headMain,
    h('h1', { class: 'chan-title', id: 'chan-title' }, icon(c && c.visibility !== 'public' ? 'lock' : 'hash'), h('span', {}, s.current)),
    h('div', { class: 'chips' }, chips),
    c ? h('span', { class: 'head-owner hide-phone' }, `host: ${c.owner}`) : null,
    actions);
}

function renderBanners() {
  if (!ui) return;
  const out = [];
  if (!s.nodeUp) {
    out.push(h('div', { class: 'banner warn', role: 'alert', id: 'banner-node' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Your node is not running'), ' — nothing here is live. Start it again with ',
        h('code', {}, 'segchat up'), ' (or ', h('code', {}, 'segchat node'), ') in a terminal; this tab reconnects by itself, and what you type stays here.')));
    clear(ui.banners, out);
    return;
  }
  if (!s.serverConnected) {
    out.push(h('div', { class: 'banner warn', role: 'status', id: 'banner-server' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Server unreachable'), ' — reconnecting. You can keep reading; what you write waits in your outbox.')));
  }
  const c = channelInfo(s.current);
  const via = c && !isMine(c) && canRead(c) ? s.links[s.current] : null;
  if (via === 'server') {
    out.push(h('div', { class: 'banner host', role: 'status', id: 'banner-host' }, icon('cloud'),
      h('span', {}, h('strong', {}, "Host offline — reading the server's backup."), ` Messages still go through; ${c.owner}'s node catches up when it returns.`)));
  } else if (via === 'offline') {
    out.push(h('div', { class: 'banner warn', role: 'status', id: 'banner-host' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Host and server unreachable'), ' — showing what this node has. Messages are sent when a connection returns.')));
  }
  clear(ui.banners, out);
}

// ---------------------------------------------------------------- timeline

function atBottom() {
  const t = ui.timeline;
  return t.scrollHeight - t.scrollTop - t.clientHeight < 60;
}

function drawTimeline(opts = {}) {
  if (!ui) return;
  const t = ui.timeline;
  if (!s.current) {
    clear(t, h('div', { class: 'empty-state' },
      h('div', { class: 'start-icon', 'aria-hidden': 'true' }, icon('hash')),
      h('h2', {}, s.channels.length ? 'Pick a channel' : 'No channels yet'),
      h('p', { class: 'muted' }, s.me.kind === 'visitor'
        ? 'Channels that welcome visitors appear on the left.'
        : 'Create a channel you host, or join one from Discover.'),
      s.me.kind === 'user' ? h('button', { type: 'button', class: 'btn primary', onclick: openCreateDialog }, icon('plus'), 'Create a channel') : null));
    t.setAttribute('aria-label', 'Messages');
    return;
  }
  const c = channelInfo(s.current);
  const st = chan(s.current);
  const bottom = opts.bottom || atBottom();
  const fromBottom = t.scrollHeight - t.scrollTop;
  const hadFocus = t.contains(document.activeElement) && document.activeElement !== t;
  const messages = sortMessages([...st.byId.values()]);
  t.setAttribute('aria-label', `Messages in ${s.current}`);
  let emptyText = null;
  if (c && !canRead(c)) emptyText = `Join #${s.current} to read and write its messages.`;
  else if (!st.initialized) emptyText = 'Loading…';
  renderTimeline(t, {
    channel: s.current,
    owner: c && c.owner,
    messages,
    gaps: st.gaps,
    via: s.links[s.current] || (isMine(c) ? 'hosting' : null),
    me: s.me,
    loadedAll: st.initialized && st.loadedAll && canRead(c),
    newFrom: st.newFrom ? st.newFrom.id : null,
    loading: st.loading,
    emptyText,
    openDetails: s.openDetails,
    onToggleDetails: (id) => {
      if (s.openDetails.has(id)) s.openDetails.delete(id); else s.openDetails.add(id);
      st.activeMsg = id;
      drawTimeline();
      const msg = ui.timeline.querySelector(`article[data-id="${CSS.escape(id)}"]`);
      if (msg) msg.focus({ preventScroll: true });
    },
  });
  const active = roveTimeline(t, st.activeMsg);
  if (hadFocus && active) active.focus({ preventScroll: true });
  if (bottom) t.scrollTop = t.scrollHeight;
  else t.scrollTop = t.scrollHeight - fromBottom;
}

// The message box of the open channel, if one can be written in.
function focusComposer() {
  const target = ui && (ui.composer.querySelector('textarea:not([disabled])') || ui.composer.querySelector('button, textarea'));
  if (target) target.focus();
}

async function loadLatest(name) {
  const st = chan(name);
  const r = await api('GET', `/channels/${enc(name)}/messages?limit=50`);
  for (const m of r.messages) merge(st, m);
  st.gaps = r.gaps || [];
  if (r.via) s.links[name] = r.via;
  if (!st.initialized) {
    st.nextBefore = r.next_before;
    st.loadedAll = !r.next_before;
    st.initialized = true;
  }
}

async function loadOlder() {
  const name = s.current;
  if (!name) return;
  const st = chan(name);
  if (!st.initialized || st.loading || !st.nextBefore) return;
  st.loading = true;
  drawTimeline();
  try {
    const r = await api('GET', `/channels/${enc(name)}/messages?limit=50&before=${enc(st.nextBefore)}`);
    for (const m of r.messages) merge(st, m);
    st.nextBefore = r.next_before;
    st.loadedAll = !r.next_before;
  } catch (e) {
    announce(`Could not load older messages: ${e.reason}`);
  } finally {
    st.loading = false;
  }
  if (s.current === name) {
    drawTimeline();
    fillViewport();
  }
}

// Loads older pages until the timeline can scroll (so scrolling up works).
function fillViewport() {
  const t = ui && ui.timeline;
  if (t && t.scrollHeight <= t.clientHeight + 10) loadOlder();
}

// Re-fetches the newest page (gap fills, catch-up after a reconnect).
const refreshChannel = debounce(async (name) => {
  if (!ui || !chan(name).initialized) return;
  try {
    await loadLatest(name);
  } catch { return; }
  if (s.current === name) { drawTimeline(); renderHeader(); renderBanners(); }
}, 250);

// ---------------------------------------------------------------- channels

async function refreshChannels() {
  try {
    const r = await api('GET', '/channels');
    s.channels = r.channels;
    s.cached = r.cached;
  } catch (e) {
    if (e.status === 401) return sessionGone(e.reason);
  }
  renderSide();
  renderHeader();
  renderBanners();
  renderComposer(false);
}

async function refreshUnread() {
  try {
    const r = await api('GET', '/unread');
    s.unread = r.unread;
    s.firstUnread = r.first_unread || {};
    Object.assign(s.links, r.links);
    if (s.current && s.unread[s.current] && !document.hidden) markRead(s.current);
  } catch { /* server or session gone: other events say so */ }
  renderSide();
  renderHeader();
  renderBanners();
}
const scheduleUnread = debounce(refreshUnread, 300);

async function refreshAll() {
  await Promise.all([refreshChannels(), refreshUnread(), refreshStreams()]);
}

// The live streams at load and after a reconnect; events keep them current.
async function refreshStreams() {
  if (!streams) return;
  try {
    const r = await api('GET', '/streams');
    streams.setLive(r.streams);
  } catch { /* no server or no streams subsystem: no badges */ }
  renderSide();
}

async function openChannel(name, opts = {}) {
  if (!ui) return;
  const switching = s.current !== name;
  if (s.current && ui.composer.querySelector('textarea')) s.drafts.set(s.current, ui.composer.querySelector('textarea').value);
  s.current = name;
  s.sidebarOpen = false;
  s.sendError = '';
  s.statusMenuOpen = false;
  history.replaceState(null, '', `#${enc(name)}`);
  ui.jump.hidden = true;
  // Where "New" starts is taken before the channel is marked read, and
  // stays until another channel is opened.
  if (switching) {
    for (const st of s.chans.values()) st.newFrom = null;
    chan(name).newFrom = s.unread[name] && s.firstUnread[name] ? { id: s.firstUnread[name], count: s.unread[name] } : null;
  }
  renderNewBar();
  renderSide();
  renderHeader();
  renderBanners();
  renderComposer(true, opts.focus !== false);
  drawTimeline({ bottom: true });
  if (streams) streams.render();
  const c = channelInfo(name);
  const tasks = [loadMembers(name)];
  if (canRead(c)) {
    tasks.push(loadLatest(name).then(() => {
      if (s.current !== name) return;
      drawTimeline({ bottom: true });
      renderHeader();
      renderBanners();
      fillViewport();
      if (s.unread[name]) markRead(name);
    }).catch((e) => announce(`Could not load #${name}: ${e.reason}`)));
  }
  await Promise.all(tasks);
}

// "N new messages · Jump to first unread": shown while the channel opened
// with unread messages, until the first of them is on screen or dismissed.
function renderNewBar() {
  const st = s.current ? chan(s.current) : null;
  const n = st && st.newFrom;
  ui.newBar.hidden = !n;
  if (!n) { clear(ui.newBar); return; }
  clear(ui.newBar,
    h('span', {}, `${n.count} new message${n.count === 1 ? '' : 's'}`),
    h('button', { type: 'button', class: 'btn ghost small', id: 'jump-unread', onclick: jumpToUnread }, 'Jump to first unread'),
    h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Dismiss', onclick: () => { ui.newBar.hidden = true; } }, icon('close')));
}

async function jumpToUnread() {
  const name = s.current;
  const st = chan(name);
  if (!st.newFrom) return;
  for (let i = 0; i < 50 && !st.byId.has(st.newFrom.id) && st.nextBefore && s.current === name; i++) await loadOlder();
  drawTimeline();
  const divider = document.getElementById('new-divider');
  if (divider) {
    divider.scrollIntoView({ block: 'start' });
    ui.newBar.hidden = true;
    const first = divider.nextElementSibling;
    if (first) { first.setAttribute('tabindex', '-1'); first.focus({ preventScroll: true }); }
  }
}

// A short notice in the corner (an invitation), with one action; it goes
// by itself after a while and is announced to screen readers.
function showNotice(text, action) {
  if (!ui) return;
  const close = () => { el.remove(); };
  const el = h('div', { class: 'toast', role: 'status', id: 'notice' },
    h('span', {}, text),
    action ? h('button', { type: 'button', class: 'btn primary small', onclick: () => { close(); action.run(); } }, action.label) : null,
    h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Dismiss', onclick: close }, icon('close')));
  const old = document.getElementById('notice');
  if (old) old.remove();
  ui.layout.append(el);
  announce(text);
  setTimeout(close, 15000);
}

async function markRead(name) {
  try {
    await api('POST', `/channels/${enc(name)}/read`);
    s.unread[name] = 0;
    renderSide();
  } catch { /* harmless: stays unread */ }
}
const scheduleRead = debounce(markRead, 400);

async function joinChannel(name) {
  try {
    await api('POST', `/channels/${enc(name)}/join`);
    announce(`Joined #${name}`);
    chan(name).initialized = false;
    await refreshChannels();
    await openChannel(name);
  } catch (e) {
    s.sendError = e.reason;
    renderComposer(false);
  }
}

async function leaveChannel(name) {
  if (!window.confirm(`Leave #${name}? You can join again later.`)) return;
  try {
    await api('POST', `/channels/${enc(name)}/leave`);
    announce(`Left #${name}`);
    s.chans.delete(name);
    await refreshChannels();
    await openChannel(name);
  } catch (e) {
    announce(e.reason);
  }
}

// ---------------------------------------------------------------- composer

const utf8 = new TextEncoder();

function renderComposer(force = true, focus = false) {
  if (!ui) return;
  const c = channelInfo(s.current);
  const existing = ui.composer.querySelector('textarea:not([disabled])');
  if (!force && existing && canWrite(c)) {
    // Keep what is being typed; only refresh the error line.
    const err = ui.composer.querySelector('.send-error');
    if (err) err.textContent = s.sendError;
    return;
  }
  const errorLine = h('p', { class: 'send-error', role: 'alert', id: 'send-error' }, s.sendError);
  if (!s.current) { clear(ui.composer); return; }
  if (s.me.kind === 'visitor') {
    clear(ui.composer,
      h('div', { class: 'composer disabled' },
        h('label', { class: 'visually-hidden', for: 'composer-input' }, `Message #${s.current}`),
        h('textarea', { id: 'composer-input', rows: '1', disabled: true, placeholder: `You can't write in #${s.current}`, 'aria-describedby': 'composer-why' })),
      h('p', { class: 'composer-why', id: 'composer-why' }, icon('eye'),
        'You are visiting: visitors can read but not write. Create an account to join the conversation.'));
    return;
  }
  if (c && !canWrite(c)) {
    clear(ui.composer,
      h('div', { class: 'join-bar' },
        h('p', {}, `You are previewing #${s.current}, hosted by ${c.owner}.`),
        h('button', { type: 'button', class: 'btn primary', id: 'join-channel', onclick: () => joinChannel(c.name) }, `Join #${c.name}`)),
      errorLine);
    return;
  }
  const ta = h('textarea', {
    id: 'composer-input', rows: '1', placeholder: `Message #${s.current}`, 'aria-describedby': 'composer-hint send-error',
    enterkeyhint: 'send',
  });
  ta.value = s.drafts.get(s.current) || '';
  // The limit is in UTF-8 bytes (what the server counts), not characters;
  // nothing is cut: a longer text stays in the box, counted, and is refused
  // before it is sent.
  const limit = (s.node && s.node.max_body_len) || 4000;
  const counter = h('span', { class: 'body-count', id: 'body-count', 'aria-live': 'polite' });
  const sendBtn = h('button', { type: 'submit', class: 'send-btn', 'aria-label': 'Send message', title: 'Send (Enter)' }, icon('send'));
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
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
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
    ta.value = '';
    grow();
    s.drafts.delete(name);
    s.sendError = '';
    errorLine.textContent = '';
    try {
      const r = await api('POST', `/channels/${enc(name)}/messages`, { body: text });
      merge(chan(name), r.message);
      if (s.current === name) drawTimeline({ bottom: true });
    } catch (e) {
      if (!ta.value) ta.value = text;
      grow();
      s.sendError = `Not sent: ${e.reason}`;
      errorLine.textContent = s.sendError;
    }
  }
  clear(ui.composer,
    h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); submit(); } },
      h('label', { class: 'visually-hidden', for: 'composer-input' }, `Message #${s.current}`),
      ta, sendBtn),
    h('div', { class: 'composer-foot' },
      h('p', { class: 'composer-hint', id: 'composer-hint' }, h('kbd', {}, 'Enter'), ' to send · ', h('kbd', {}, 'Shift'), '+', h('kbd', {}, 'Enter'), ' for a new line'),
      counter),
    errorLine);
  measure();
  requestAnimationFrame(grow);
  if (focus && !phone.matches) ta.focus();
}

// ---------------------------------------------------------------- members and search panel

async function loadMembers(name) {
  try {
    const r = await api('GET', `/channels/${enc(name)}/members`);
    s.members.set(name, r.members);
  } catch {
    s.members.set(name, null);
  }
  if (s.current === name) renderPanel();
}

function togglePanel(which) {
  s.panel = s.panel === which ? null : which;
  renderLayout();
  renderPanel();
  if (s.panel) {
    const f = ui.panel.querySelector('h2');
    if (f) f.focus();
  }
}

function renderPanel() {
  if (!ui) return;
  if (s.panel === 'search') return renderSearchPanel();
  if (s.panel !== 'members') { clear(ui.panel); ui.panel.removeAttribute('aria-label'); return; }
  ui.panel.setAttribute('aria-label', 'Members');
  const list = s.current ? s.members.get(s.current) : null;
  const close = h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Close members', onclick: () => togglePanel('members') }, icon('close'));
  if (!list) {
    clear(ui.panel, h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, 'Members'), close),
      h('p', { class: 'empty-line' }, s.current ? 'Members are shown to people in the channel.' : 'Pick a channel.'));
    return;
  }
  const shown = list.map((m) => ({ ...m, presence: m.username === s.me.username ? s.me.status : m.presence }));
  const online = shown.filter((m) => m.presence === 'online' || m.presence === 'idle');
  const offline = shown.filter((m) => !(m.presence === 'online' || m.presence === 'idle'));
  const byName = (a, b) => (a.role === 'owner' ? -1 : b.role === 'owner' ? 1 : a.username.localeCompare(b.username));
  const group = (title, ms) => h('section', { class: 'member-group' },
    h('h3', {}, `${title} — ${ms.length}`),
    h('ul', { role: 'list' }, ms.sort(byName).map(memberItem)));
  clear(ui.panel,
    h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, `Members — ${list.length}`), close),
    h('div', { class: 'panel-body', id: 'member-list' }, group('Online', online), group('Offline', offline)));
}

function memberItem(m) {
  const me = m.username === s.me.username;
  const label = me && m.presence === 'invisible' ? 'Invisible (others see you offline)' : PRESENCE_LABEL[m.presence];
  return h('li', {
    class: `member ${m.presence}`, dataset: { username: m.username, presence: m.presence },
    'aria-label': `${displayName(m.username)}${me ? ' (you)' : ''}, ${label}${m.role === 'owner' ? ', host' : ''}`,
  },
  avatar(m.username, m.presence),
  h('span', { class: 'member-name', 'aria-hidden': 'true' }, displayName(m.username),
    me ? h('span', { class: 'tag' }, 'you') : null,
    m.role === 'owner' ? h('span', { class: 'role-owner', title: 'Host' }, icon('crown')) : null),
  h('span', { class: 'member-status', 'aria-hidden': 'true' }, label));
}

function runSearch(q) {
  q = q.trim();
  if (!q) return;
  s.panel = 'search';
  renderLayout();
  search.run(q);
}

function renderSearchPanel() {
  search.render(ui.panel);
}

async function jumpTo(m) {
  if (phone.matches) s.panel = null;
  if (s.current !== m.channel) await openChannel(m.channel, { focus: false });
  renderLayout();
  const st = chan(m.channel);
  for (let i = 0; i < 20 && !st.byId.has(m.id) && st.nextBefore; i++) await loadOlder();
  const el = ui.timeline.querySelector(`[data-id="${CSS.escape(m.id)}"]`);
  if (el) {
    el.scrollIntoView({ block: 'center' });
    el.classList.add('flash');
    setTimeout(() => el.classList.remove('flash'), 2000);
  }
}

// ---------------------------------------------------------------- create dialog

// "General Chat!" → "general-chat": lower case, accents dropped, every run
// of anything else one '-', none at the ends, at most 32 bytes.
function channelSlug(text) {
  return text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-').replace(/-{2,}/g, '-').replace(/^-+|-+$/g, '')
    .slice(0, 32).replace(/-+$/, '');
}

function openCreateDialog() {
  const d = ui.dialog;
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
      announce(`Created #${name}`);
      await refreshChannels();
      await openChannel(name);
    } catch (ex) {
      err.textContent = ex.reason;
      btn.disabled = false;
    }
  }
  clear(d, form);
  d.showModal();
  d.querySelector('#new-name').focus();
}

// ---------------------------------------------------------------- you

async function setStatus(status) {
  s.statusMenuOpen = false;
  try {
    const r = await api('PUT', '/status', { status });
    s.me = { ...s.me, status: r.status };
    announce(`Status: ${PRESENCE_LABEL[r.status]}`);
  } catch (e) {
    announce(`Could not change status: ${e.reason}`);
  }
  renderSide();
  renderPanel();
  const b = document.getElementById('status-button');
  if (b) b.focus();
}

async function signOut() {
  if (streams) { await streams.stopOwn(); streams.unwatch(); }
  try { await api('DELETE', '/session'); } catch { /* gone already */ }
  resetData();
  showSignIn();
}

function resetData() {
  s.channels = [];
  s.chans.clear();
  s.members.clear();
  s.unread = {};
  s.links = {};
  s.current = null;
  s.panel = phone.matches ? null : 'members';
  history.replaceState(null, '', '/');
}

function sessionGone(reason) {
  resetData();
  showSignIn(reason);
}

// ---------------------------------------------------------------- events

// The tab's own node stopped answering (its event socket closed): say so,
// and show nothing it told us as live until it is back.
function nodeGone() {
  if (!s.nodeUp) return;
  s.nodeUp = false;
  if (ui) {
    ui.layout.classList.add('node-down');
    renderBanners();
  }
}

async function resync() {
  try {
    s.node = await api('GET', '/node');
  } catch (e) {
    // A node that came back on another address or with a new token (its
    // last port was taken, or `api-last.json` was deleted) no longer knows
    // this tab: only its new link helps.
    if (e.status === 401) { ui = null; renderNoToken(root, true); }
    return;
  }
  s.nodeUp = true;
  if (ui) ui.layout.classList.remove('node-down');
  s.serverConnected = s.node.server_connected;
  if (s.signIn) { s.signIn.setServer(s.serverConnected); return; }
  if (!ui) return;
  if (!s.node.session) return sessionGone('Your session ended. Sign in again.');
  s.me = s.node.session;
  await refreshAll();
  if (s.current) {
    refreshChannel(s.current);
    loadMembers(s.current);
  }
  renderBanners();
}

function onEvent(ev) {
  switch (ev.type) {
    case 'message': {
      const m = ev.message;
      const st = s.chans.get(m.channel);
      if (st && st.initialized) {
        const inGap = m.host_seq != null && st.gaps.some((g) => m.host_seq >= g.from_host_seq && m.host_seq <= g.to_host_seq);
        merge(st, m);
        if (inGap) refreshChannel(m.channel);
        if (s.current === m.channel && ui) {
          const stick = atBottom() || (s.me && m.author === s.me.username);
          drawTimeline({ bottom: stick });
          if (!stick) ui.jump.hidden = false;
        }
      }
      if (s.me && m.author !== s.me.username) {
        if (s.current === m.channel && !document.hidden) scheduleRead(m.channel);
        else scheduleUnread();
      }
      break;
    }
    case 'message_state': {
      const st = s.chans.get(ev.channel);
      if (st && st.byId.has(ev.id)) {
        merge(st, { ...st.byId.get(ev.id), state: ev.state, reason: ev.reason });
        if (s.current === ev.channel) drawTimeline();
      } else {
        earlyStates.set(ev.id, { state: ev.state, reason: ev.reason });
        if (earlyStates.size > 1000) earlyStates.delete(earlyStates.keys().next().value);
      }
      break;
    }
    case 'channel_link':
      s.links[ev.channel] = ev.via;
      renderSide();
      if (s.current === ev.channel) { renderHeader(); renderBanners(); }
      if (ev.via === 'host' || ev.via === 'hosting') refreshChannel(ev.channel);
      break;
    case 'host_status': {
      const c = channelInfo(ev.channel);
      if (c) c.host = ev.host;
      renderSide();
      if (s.current === ev.channel) renderHeader();
      break;
    }
    case 'presence':
      for (const [, list] of s.members) {
        if (!list) continue;
        for (const m of list) if (m.username === ev.username) m.presence = ev.status;
      }
      // Our own online/idle, changed by the node (idle without input) or
      // another of our nodes; an invisible self is shown offline to
      // others, so those events do not describe it.
      if (s.me && ev.username === s.me.username && s.me.status !== 'invisible' && (ev.status === 'online' || ev.status === 'idle')) {
        s.me = { ...s.me, status: ev.status };
        renderSide();
      }
      renderPanel();
      break;
    case 'member_joined':
    case 'member_left':
      if (s.current === ev.channel) loadMembers(ev.channel);
      refreshChannels();
      break;
    case 'invited':
      refreshChannels();
      showNotice(`${displayName(ev.by)} invited you to #${ev.channel.name}`, { label: `Open #${ev.channel.name}`, run: () => openChannel(ev.channel.name) });
      break;
    case 'channel_created':
      refreshChannels();
      // Its host registers a moment after creating it; show the host's dot.
      setTimeout(refreshChannels, 1500);
      break;
    case 'stream_started':
      if (streams && ev.stream) {
        streams.started(ev.stream);
        renderSide();
        if (s.current === ev.stream.channel) announce(`${displayName(ev.stream.streamer)} is live in #${ev.stream.channel}`);
      }
      break;
    case 'stream_stopped':
      if (streams) {
        if (streams.own && streams.own.id === ev.stream_id) streams.stopOwn(`Your stream ended (${ev.reason}).`);
        streams.stopped(ev.stream_id);
        renderSide();
      }
      break;
    case 'session_ended':
      if (ui) sessionGone(`Signed out: ${ev.reason}`);
      break;
    case 'server_connected':
      s.serverConnected = true;
      if (s.signIn) s.signIn.setServer(true);
      resync();
      renderSide();
      renderBanners();
      break;
    case 'server_disconnected':
      s.serverConnected = false;
      if (s.signIn) s.signIn.setServer(false);
      renderSide();
      renderBanners();
      break;
    case 'lagged':
      resync();
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- keyboard

document.addEventListener('keydown', (e) => {
  if (!ui) return;
  if (e.key === 'Escape') {
    if (s.statusMenuOpen || s.sidebarOpen || (phone.matches && s.panel)) { closeOverlays(); e.preventDefault(); }
    return;
  }
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k') {
    e.preventDefault();
    ui.searchInput.focus();
    return;
  }
  if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
    e.preventDefault();
    const g = groupChannels(s.channels, s.me);
    const order = [...g.hosted, ...g.joined, ...g.discover].map((c) => c.name);
    if (!order.length) return;
    const i = order.indexOf(s.current);
    const next = order[(i + (e.key === 'ArrowDown' ? 1 : order.length - 1) + (i < 0 ? 1 : 0)) % order.length];
    openChannel(next);
  }
});

// Presence follows the person: input in this tab tells the node (at most
// every 20 s; every 2 s while shown idle), which shows them idle after a
// while without any.
let lastActivity = 0;
function activity() {
  if (!s.me || s.me.kind !== 'user' || !s.nodeUp) return;
  const now = Date.now();
  // Shown idle: the first input brings them back at once.
  const gap = s.me.status === 'idle' ? 2000 : 20000;
  if (now - lastActivity < gap) return;
  lastActivity = now;
  api('POST', '/activity').catch(() => { lastActivity = 0; });
}
for (const type of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart']) {
  document.addEventListener(type, activity, { passive: true, capture: true });
}
window.addEventListener('focus', activity);

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && s.current && s.unread[s.current]) markRead(s.current);
});

phone.addEventListener('change', () => {
  s.sidebarOpen = false;
  s.panel = phone.matches ? null : (s.panel || 'members');
  renderLayout();
  renderPanel();
});

document.addEventListener('click', (e) => {
  if (s.statusMenuOpen && ui && !e.target.closest('.me-panel')) {
    s.statusMenuOpen = false;
    renderSide();
  }
});

boot();
