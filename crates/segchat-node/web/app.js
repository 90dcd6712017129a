// segchat web UI: state, layout and the wiring to the node's API and its
// event WebSocket. Drawing lives in modules of its own: the sidebar, the
// header and banners, the timeline and what a message holds (markdown,
// reactions, actions), the composer, the members panel, search, dialogs,
// direct messages (which take the conversation area while one is open)
// and the sign-in screen. Everything updates from pushed events; nothing
// polls.

import { api, enc, connectEvents } from './api.js';
import { h, clear, icon, announce, toast } from './dom.js';
import { displayName, PRESENCE_LABEL, channelTitle, channelRef } from './format.js';
import { renderSignIn, renderNoToken } from './signin.js';
import { renderSidebar, groupChannels } from './sidebar.js';
import { renderTimeline, sortMessages, merge, earlyState } from './messages.js';
import { StreamArea } from './streams.js';
import { openInviteDialog, openChannelInvite } from './invite.js';
import { roveTimeline, timelineKeys, focusAddress, findAddress } from './timeline-keys.js';
import { SearchPanel } from './search.js';
import { renderComposer as drawComposer, startReply } from './composer.js';
import { MessageActions } from './message-actions.js';
import { notificationState, askNotifications, notifyMention } from './mentions.js';
import { renderMembers } from './members.js';
import { renderHeader as drawHeader, renderBanners as drawBanners } from './header.js';
import { openCreateDialog as openCreate } from './create-dialog.js';
import { openChannelSettings, closeSettingsFor } from './channel-settings.js';
import { Friends } from './friends.js';
import { DirectMessages, conversationTitle } from './dms.js';

const root = document.getElementById('app');
const phone = window.matchMedia('(max-width: 768px)');

const s = {
  node: null,
  me: null,
  channels: [],
  cached: false,
  unread: {},
  // Per channel, how many unread messages mention me (GET /unread).
  mentions: {},
  // Per channel, the message the composer replies to.
  replyTo: new Map(),
  // Browser notifications for mentions: 'default' until asked.
  notify: notificationState(),
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
// Friends, requests and blocks (friends.js), shown in the side panel.
const friends = new Friends({
  changed: () => { renderSide(); if (s.panel === 'friends') renderPanel(); },
  close: () => togglePanel('friends'),
  message: (name) => dms.show(name),
});
// Direct messages (dms.js): while one is open, no channel is.
const dms = new DirectMessages({
  me: () => s.me,
  ui: () => ui,
  limit: () => (s.node && s.node.max_body_len) || 4000,
  isPhone: () => phone.matches,
  presenceOf: (name) => {
    const f = friends.list.find((r) => r.kind === 'friend' && r.username === name);
    if (f && f.presence) return f.presence;
    for (const [, list] of s.members) {
      const m = list && list.find((x) => x.username === name);
      if (m) return m.presence;
    }
    return null;
  },
  friendNames: () => friends.list.filter((r) => r.kind === 'friend').map((r) => r.username),
  opening: () => {
    if (s.current) {
      scheduleRead.flush(s.current);
      const ta = ui.composer.querySelector('textarea');
      if (ta) s.drafts.set(s.current, ta.value);
    }
    s.current = null;
    s.sidebarOpen = false;
    s.statusMenuOpen = false;
    s.sendError = '';
    if (phone.matches) s.panel = null;
    for (const st of s.chans.values()) st.newFrom = null;
    ui.newBar.hidden = true;
    ui.jump.hidden = true;
    if (streams) streams.render();
  },
  redraw: () => renderAll(),
  changed: () => renderSide(),
});
// Reply, react, edit and delete (message-actions.js), and its state.
const msgActions = new MessageActions({
  me: () => s.me,
  canWrite: (name) => !!canWrite(channelInfo(name)),
  canModerate: (name) => { const c = channelInfo(name); return !!c && (isMine(c) || c.my_role === 'moderator'); },
  apply: (row) => { applyUpdate(row); },
  redraw: () => drawTimeline(),
  reply: (m) => { if (ui) startReply(ui.composer, s, composerDeps, m); },
  limit: () => (s.node && s.node.max_body_len) || 4000,
  dialogHost: () => (ui ? ui.layout : document.body),
  notice: (text) => showNotice(text),
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

function debounce(fn, ms) {
  const timers = new Map();
  const call = (key = '') => {
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => { timers.delete(key); fn(key); }, ms));
  };
  // Makes a pending call for `key` now (none pending: nothing).
  call.flush = (key = '') => {
    if (!timers.has(key)) return;
    clearTimeout(timers.get(key));
    timers.delete(key);
    fn(key);
  };
  return call;
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
    setActive: (id) => { if (dms.open) dms.setActive(id); else if (s.current) chan(s.current).activeMsg = id; },
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
    if (wanted.startsWith('@') && s.me.kind === 'user') { dms.show(wanted.slice(1)); return; }
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
  const total = Object.values(s.unread).reduce((a, b) => a + b, 0) + dms.unreadTotal();
  const where = s.current ? `#${channelTitle(channelInfo(s.current), s.current)} — ` : dms.open ? `@${conversationTitle(dms.open)} — ` : '';
  document.title = `${total ? `(${total}) ` : ''}${where}segchat`;
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
    friends: () => { s.sidebarOpen = false; openFriends(friends.incoming() ? 'pending' : 'online'); },
    friendRequests: () => friends.incoming(),
    dms: () => dms.sidebarSection(),
    toggleStatusMenu: () => {
      s.statusMenuOpen = !s.statusMenuOpen;
      renderSide();
      const target = s.statusMenuOpen ? ui.sidebar.querySelector('[role=menuitemradio][aria-checked=true]') : document.getElementById('status-button');
      if (target) target.focus();
    },
    setStatus,
    signOut,
    enableNotifications: async () => {
      s.notify = await askNotifications();
      announce(s.notify === 'granted' ? 'Notifications on: you are told when someone mentions you while this tab is hidden.' : 'Notifications stay off (the browser was told no).');
      renderSide();
    },
  });
  renderLayout();
}

// The channel's header and the banners above the timeline (header.js).
const headerDeps = {
  channelInfo,
  isMine,
  canRead,
  writeReason,
  streams: () => streams,
  invite: (c) => openChannelInvite(ui.dialog, c.name),
  leave: (name) => leaveChannel(name),
  settings: (c) => openChannelSettings(ui.dialog, c, {
    saved: (updated) => { patchChannel(updated); refreshChannels(); },
    deleted: (name) => { forgetChannel(name, `${channelRef(c)} was deleted.`); refreshChannels(); },
  }),
};

function renderHeader() {
  if (ui && dms.open) dms.renderHeader(ui.headMain);
  else if (ui) drawHeader(ui.headMain, s, headerDeps);
}

function renderBanners() {
  if (ui) drawBanners(ui.banners, s, headerDeps);
}

// ---------------------------------------------------------------- timeline

function atBottom() {
  const t = ui.timeline;
  return t.scrollHeight - t.scrollTop - t.clientHeight < 60;
}

function drawTimeline(opts = {}) {
  if (!ui) return;
  if (dms.open) { dms.drawTimeline(opts); return; }
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
  const focused = focusAddress(t);
  const messages = sortMessages([...st.byId.values()]);
  t.setAttribute('aria-label', `Messages in ${s.current}`);
  msgActions.beforeDraw();
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
    actions: msgActions,
    lookup: (id) => st.byId.get(id),
    flash: s.flash && s.flash.until > Date.now() ? s.flash.id : null,
    onQuote: (m) => jumpTo({ channel: m.channel, id: m.reply_to }, { original: true }),
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
  // Focus stays where it was (a message, or a control in it).
  const again = hadFocus ? findAddress(t, focused) || active : null;
  if (again) again.focus({ preventScroll: true });
  if (bottom) t.scrollTop = t.scrollHeight;
  else t.scrollTop = t.scrollHeight - fromBottom;
  msgActions.afterDraw(t);
}

// A message as the node now has it (an edit, a delete, a reaction, from
// anyone): replaces the one shown, and the quotes of replies to it.
function applyUpdate(m) {
  const st = s.chans.get(m.channel);
  if (!st) return;
  let shown = false;
  for (const r of st.byId.values()) {
    if (r.reply_to === m.id && r.quote) { r.quote = { ...r.quote, body: m.body, deleted: !!m.deleted }; shown = true; }
  }
  if (st.byId.has(m.id)) { merge(st, m); shown = true; }
  if (msgActions.isEditing(m) && m.deleted) msgActions.editing = null;
  if (shown && s.current === m.channel) drawTimeline();
}

// My last message in the open channel, to edit (↑ in an empty box).
function editLast() {
  if (!s.current) return false;
  const mine = sortMessages([...chan(s.current).byId.values()]).filter((m) => msgActions.canEdit(m));
  return mine.length ? msgActions.startEdit(mine[mine.length - 1]) : false;
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
  if (dms.open) return dms.loadOlder();
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

// A channel's new settings (an answer, or `channel_updated`), shown at
// once; the list is re-read after.
function patchChannel(c) {
  const old = c && channelInfo(c.name);
  if (!old) return;
  for (const k of ['title', 'topic', 'visibility', 'allow_visitors']) if (k in c) old[k] = c[k];
  renderSide();
  renderHeader();
  if (s.current === c.name) drawTimeline();
}

// A channel deleted or hidden from me: gone from the list and what is
// kept about it; if it was open, another opens, with `notice`.
function forgetChannel(name, notice) {
  closeSettingsFor(ui && ui.dialog, name);
  s.channels = s.channels.filter((c) => c.name !== name);
  for (const m of [s.chans, s.members, s.drafts, s.replyTo]) m.delete(name);
  for (const o of [s.unread, s.mentions, s.firstUnread, s.links]) delete o[name];
  if (s.current !== name) { renderSide(); return; }
  s.current = null;
  history.replaceState(null, '', '/');
  const next = pickDefault();
  if (next) openChannel(next); else renderAll();
  showNotice(notice);
}

async function refreshUnread() {
  try {
    const r = await api('GET', '/unread');
    s.unread = r.unread;
    s.mentions = r.mentions || {};
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
  const user = s.me && s.me.kind === 'user';
  await Promise.all([refreshChannels(), refreshUnread(), refreshStreams(), user ? friends.load() : null, user ? dms.load() : null]);
}

// Opens the friends panel on `tab`.
function openFriends(tab) {
  friends.tab = tab;
  if (s.panel !== 'friends') togglePanel('friends'); else renderPanel();
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
  dms.close();
  const switching = s.current !== name;
  if (switching && s.current) scheduleRead.flush(s.current);
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
    msgActions.pickerFor = null;
    msgActions.tapped = null;
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

// A short notice in the corner (dom.js `toast`).
function showNotice(text, action) {
  if (ui) toast(ui.layout, text, action);
}

async function markRead(name) {
  try {
    await api('POST', `/channels/${enc(name)}/read`);
    s.unread[name] = 0;
    s.mentions[name] = 0;
    renderSide();
  } catch { /* harmless: stays unread */ }
}
// Messages arriving in the open channel are marked read a moment later,
// gathered. Marking read covers "everything stored so far", so a pending
// mark is done at once when the channel is left: fired later, it would
// also cover what arrived there after, unseen (and its badge never shown).
const scheduleRead = debounce((name) => {
  if (s.current === name && !document.hidden) markRead(name);
}, 400);

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

const composerDeps = {
  channelInfo,
  canWrite,
  join: (name) => joinChannel(name),
  editLast,
  isPhone: () => phone.matches,
  send: async (name, text, replyTo) => {
    const r = await api('POST', `/channels/${enc(name)}/messages`, replyTo ? { body: text, reply_to: replyTo } : { body: text });
    merge(chan(name), r.message);
    if (s.current === name) drawTimeline({ bottom: true });
  },
};

function renderComposer(force = true, focus = false) {
  if (ui && dms.open) dms.renderComposer(force, focus);
  else if (ui) drawComposer(ui.composer, s, composerDeps, force, focus);
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
  if (s.panel === 'friends') return friends.render(ui.panel);
  if (s.panel === 'members' && dms.open) return dms.renderMembers(ui.panel, () => togglePanel('members'));
  if (s.panel !== 'members') { clear(ui.panel); ui.panel.removeAttribute('aria-label'); return; }
  renderMembers(ui.panel, s, () => togglePanel('members'));
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

// Shows message `m` (its channel and id) in its channel, loading older
// pages until it is there; says so when it is not (`original`: the
// message a reply quotes).
async function jumpTo(m, { original = false } = {}) {
  if (phone.matches) s.panel = null;
  if (s.current !== m.channel) await openChannel(m.channel, { focus: false });
  renderLayout();
  const st = chan(m.channel);
  for (let i = 0; i < 20 && !st.byId.has(m.id) && st.nextBefore && s.current === m.channel; i++) await loadOlder();
  const el = ui.timeline.querySelector(`article[data-id="${CSS.escape(m.id)}"]`);
  if (el) {
    st.activeMsg = m.id;
    roveTimeline(ui.timeline, m.id);
    el.scrollIntoView({ block: 'center' });
    el.focus({ preventScroll: true });
    // Kept through redraws (older pages may still be arriving).
    s.flash = { id: m.id, until: Date.now() + 2000 };
    el.classList.add('flash');
    setTimeout(() => {
      const now = ui && ui.timeline.querySelector(`article[data-id="${CSS.escape(m.id)}"]`);
      if (now) now.classList.remove('flash');
    }, 2000);
  } else {
    showNotice(original ? 'The original message is not in the history this node has.' : 'That message is not in the history this node has.');
  }
}

function openCreateDialog() {
  openCreate(ui.dialog, async (name) => {
    announce(`Created #${name}`);
    await refreshChannels();
    await openChannel(name);
  });
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
  s.mentions = {};
  s.replyTo.clear();
  msgActions.reset();
  s.links = {};
  s.current = null;
  friends.reset();
  dms.reset();
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
  dms.refresh();
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
        notifyMention(m, s.me.username, () => openChannel(m.channel).then(() => jumpTo(m)));
      }
      break;
    }
    case 'message_updated':
      if (!ev.message) break;
      applyUpdate(ev.message);
      // An edit may add or take away a mention of me.
      if (s.me && ev.message.author !== s.me.username && s.unread[ev.message.channel]) scheduleUnread();
      break;
    case 'message_state': {
      const st = s.chans.get(ev.channel);
      if (st && st.byId.has(ev.id)) {
        merge(st, { ...st.byId.get(ev.id), state: ev.state, reason: ev.reason });
        if (s.current === ev.channel) drawTimeline();
      } else {
        earlyState(ev.id, ev.state, ev.reason);
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
    case 'relation': {
      const was = friends.kindOf(ev.username);
      friends.apply(ev);
      const name = displayName(ev.username);
      if (ev.kind === 'incoming') showNotice(`${name} wants to be your friend`, { label: 'Show', run: () => openFriends('pending') });
      else if (ev.kind === 'friend' && was === 'outgoing') showNotice(`${name} accepted your friend request`);
      break;
    }
    case 'direct_message':
    case 'direct_message_updated':
      dms.event(ev);
      break;
    case 'presence':
      friends.presence(ev.username, ev.status);
      dms.presence(ev.username, ev.status);
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
    case 'channel_updated':
      patchChannel(ev.channel);
      refreshChannels();
      break;
    case 'channel_hidden':
    case 'channel_deleted': {
      const c = channelInfo(ev.channel);
      const why = ev.type === 'channel_hidden' ? 'is no longer visible to you' : c && c.my_role === 'owner' ? 'was deleted' : 'was deleted by its owner';
      if (c && ui) forgetChannel(ev.channel, `${channelRef(c)} ${why}.`);
      refreshChannels();
      break;
    }
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
  dms.visible();
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
