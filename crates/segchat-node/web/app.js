// segchat web UI: the shell. It boots (the node, its event WebSocket,
// sign-in or the app), lays out the page and draws its frame (sidebar,
// header and banners, composer), and wires the parts together, each
// handed what it needs of the others in a `deps` object. The state they
// share is state.js's. The parts: the timeline (timeline.js), channels
// (channels.js), the side panel (panel.js), you and your session
// (session.js), pushed events (events.js) and page-wide listeners such
// as keyboard shortcuts (page-listeners.js); drawing lives in modules of
// its own: the sidebar, the header and banners, what a message holds
// (markdown, reactions, actions, shared files), the composer and its
// uploads, the members panel, search, dialogs, direct messages (which
// take the conversation area while one is open) and the sign-in screen.
// Everything updates from pushed events; nothing polls but a file on its
// way (file-view.js), for which the node has no event.

import { api, enc, connectEvents } from './api.js';
import { h, clear, icon, announce, toast } from './dom.js';
import { channelTitle, channelRef } from './format.js';
import { renderSignIn, renderNoToken } from './signin.js';
import { renderSidebar } from './sidebar.js';
import { merge } from './messages.js';
import { StreamArea } from './streams.js';
import { openInviteDialog, openChannelInvite } from './invite.js';
import { timelineKeys } from './timeline-keys.js';
import { SearchPanel } from './search.js';
import { renderComposer as drawComposer, startReply } from './composer.js';
import { MessageActions } from './message-actions.js';
import { askNotifications } from './mentions.js';
import { renderHeader as drawHeader, renderBanners as drawBanners } from './header.js';
import { openChannelSettings } from './channel-settings.js';
import { Friends } from './friends.js';
import { DirectMessages, conversationTitle } from './dms.js';
import {
  s, ui, setUi, streams, setStreams, phone, chan, channelInfo, isMine, canRead, canWrite, writeReason,
} from './state.js';
import { createTimeline } from './timeline.js';
import { createChannels } from './channels.js';
import { createPanel } from './panel.js';
import { createSession } from './session.js';
import { createEvents } from './events.js';
import { listenToPage } from './page-listeners.js';
import { Uploads } from './files.js';
import { FileView } from './file-view.js';

const root = document.getElementById('app');

let events = null;

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
  uploads: () => uploads,
  files: () => fileView,
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

// Files shared in the timeline (file-view.js), and the uploads of files
// to share (files.js).
const fileView = new FileView();
const uploads = new Uploads({
  sent: (row, where) => {
    if (where.dm) { dms.took(row); return; }
    merge(chan(row.channel), row);
    if (s.current === row.channel && !dms.open) drawTimeline({ bottom: true });
  },
  keepBottom: (draw) => {
    const stick = !!ui && atBottom();
    draw();
    if (stick) ui.timeline.scrollTop = ui.timeline.scrollHeight;
  },
});

// ---------------------------------------------------------------- the parts

// The side panel (panel.js): members, search results or friends.
const { openFriends, loadMembers, togglePanel, renderPanel, runSearch } = createPanel({
  search, friends, dms, renderLayout,
});
// You (session.js): your status, signing out, a session that ends.
const { setStatus, signOut, sessionGone } = createSession({
  msgActions, friends, dms, renderSide, renderPanel, showSignIn,
});
// The open channel's timeline (timeline.js).
const {
  atBottom, drawTimeline, applyUpdate, editLast, focusComposer, loadLatest, loadOlder, fillViewport,
  refreshChannel, renderNewBar, jumpTo,
} = createTimeline({
  msgActions,
  dms,
  fileView,
  openChannel: (name, opts) => openChannel(name, opts),
  openCreateDialog: () => openCreateDialog(),
  renderLayout,
  renderHeader,
  renderBanners,
  showNotice,
});
// Channels (channels.js): the list, unread counts, opening, joining.
const {
  pickDefault, refreshChannels, patchChannel, forgetChannel, scheduleUnread, refreshAll, openChannel,
  markRead, scheduleRead, joinChannel, leaveChannel, openCreateDialog,
} = createChannels({
  msgActions, dms, friends, renderAll, renderSide, renderHeader, renderBanners, renderComposer,
  drawTimeline, renderNewBar, loadLatest, fillViewport, loadMembers, sessionGone, showNotice,
});
// What the node pushes (events.js).
const { nodeGone, resync, onEvent } = createEvents({
  root, friends, dms, renderSide, renderHeader, renderBanners, renderPanel, atBottom, drawTimeline,
  applyUpdate, refreshChannel, jumpTo, refreshAll, refreshChannels, patchChannel, forgetChannel,
  openChannel, scheduleRead, scheduleUnread, loadMembers, openFriends, sessionGone, showNotice,
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
  setUi(null);
  document.title = 'Sign in — segchat';
  s.signIn = renderSignIn(root, {
    node: s.node,
    onSignedIn: (session) => { s.signIn = null; enterApp(session); },
  });
  if (notice) s.signIn.showError(notice);
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
  uploads.dropArea(main);
  setUi({ layout, sidebar, main, headMain, searchInput, membersBtn, banners, timeline, jump, newBar, composer, panel, dialog });
  if (streams) { streams.stopOwn(); streams.unwatch(); }
  setStreams(new StreamArea(streamEl, () => {
    const c = channelInfo(s.current);
    return { channel: s.current, canWrite: !!canWrite(c), writeReason: writeReason(c), me: s.me };
  }, () => { renderHeader(); renderSide(); }));
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

// A short notice in the corner (dom.js `toast`).
function showNotice(text, action) {
  if (ui) toast(ui.layout, text, action);
}

// ---------------------------------------------------------------- composer

const composerDeps = {
  channelInfo,
  canWrite,
  join: (name) => joinChannel(name),
  editLast,
  isPhone: () => phone.matches,
  uploads,
  send: async (name, text, replyTo) => {
    const r = await api('POST', `/channels/${enc(name)}/messages`, replyTo ? { body: text, reply_to: replyTo } : { body: text });
    merge(chan(name), r.message);
    if (s.current === name) drawTimeline({ bottom: true });
  },
};

function renderComposer(force = true, focus = false) {
  // A conversation's box binds the uploads to itself (dm-compose.js).
  if (ui && dms.open) dms.renderComposer(force, focus);
  else if (ui) drawComposer(ui.composer, s, composerDeps, force, focus);
}

// ---------------------------------------------------------------- page-wide listeners

listenToPage({ dms, closeOverlays, openChannel, markRead, renderLayout, renderPanel, renderSide });

boot();
