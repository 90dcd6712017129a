// Channels: the list and its unread counts from the node, a channel's
// new settings or its going away, opening one (its draft kept, where
// "New" starts, its members and newest messages loaded), marking read,
// joining, leaving and creating, and the live streams at load.

import { api, enc } from './api.js';
import { announce } from './dom.js';
import { groupChannels } from './sidebar.js';
import { openCreateDialog as openCreate } from './create-dialog.js';
import { closeSettingsFor } from './channel-settings.js';
import { s, ui, streams, chan, channelInfo, canRead, debounce, linksMark, applyLinks } from './state.js';

// The state is state.js's; `deps` brings what the rest of the page does:
// the message actions, DMs and friends, drawing the sidebar, header,
// banners, composer and timeline, loading pages and members, a session
// that ended, and a notice in the corner.
export function createChannels(deps) {
  const {
    msgActions, dms, friends, renderAll, renderSide, renderHeader, renderBanners, renderComposer,
    drawTimeline, renderNewBar, loadLatest, fillViewport, loadMembers, sessionGone, showNotice,
  } = deps;

  function pickDefault() {
    const g = groupChannels(s.channels, s.me);
    const c = g.hosted[0] || g.joined[0] || g.discover[0];
    return c ? c.name : null;
  }

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
      const mark = linksMark();
      const r = await api('GET', '/unread');
      s.unread = r.unread;
      s.mentions = r.mentions || {};
      s.firstUnread = r.first_unread || {};
      applyLinks(r.links, mark);
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

  function openCreateDialog() {
    openCreate(ui.dialog, async (name) => {
      announce(`Created #${name}`);
      await refreshChannels();
      await openChannel(name);
    });
  }

  return {
    pickDefault, refreshChannels, patchChannel, forgetChannel, refreshUnread, scheduleUnread,
    refreshAll, refreshStreams, openChannel, markRead, scheduleRead, joinChannel, leaveChannel,
    openCreateDialog,
  };
}
