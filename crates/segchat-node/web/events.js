// What the node pushes on its event WebSocket (api.js `connectEvents`),
// applied to the state and the page: messages and their updates,
// channels, presence, friends, DMs, streams, the server link and the
// session. A reconnect (or a lagged socket) re-reads everything; the
// node's own socket closing shows it down until it answers again.

import { api } from './api.js';
import { announce } from './dom.js';
import { displayName, channelRef } from './format.js';
import { renderNoToken } from './signin.js';
import { merge, earlyState } from './messages.js';
import { notifyMention } from './mentions.js';
import { s, ui, setUi, streams, channelInfo, noteLinkEvent } from './state.js';

// `deps`: the page's root element, friends and DMs, and what the other
// modules do on an event (drawing, re-reading, opening, jumping).
export function createEvents(deps) {
  const {
    root, friends, dms, renderSide, renderHeader, renderBanners, renderPanel, atBottom,
    drawTimeline, applyUpdate, refreshChannel, jumpTo, refreshAll, refreshChannels, patchChannel,
    forgetChannel, openChannel, scheduleRead, scheduleUnread, loadMembers, openFriends,
    sessionGone, showNotice,
  } = deps;

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
      if (e.status === 401) { setUi(null); renderNoToken(root, true); }
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
        noteLinkEvent(ev.channel, ev.via);
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

  return { nodeGone, resync, onEvent };
}
