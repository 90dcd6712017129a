// The top of the conversation: the channel header and the banners that
// say what is not working (this tab's node, the server, the host).

import { h, clear, icon } from './dom.js';
import { VISIBILITY_LABEL, VIA_LABEL, channelTitle } from './format.js';
import { hostState } from './sidebar.js';
import { canManage } from './channel-settings.js';

// The open channel's header in `el`: its title and topic, who can see it,
// how it is reached, its host, and what can be done (go live, invite,
// settings for its owner and moderators, leave).
export function renderHeader(el, s, on) {
  const c = on.channelInfo(s.current);
  const streams = on.streams();
  if (!s.current) {
    clear(el, h('h1', { class: 'chan-title', id: 'chan-title' }, 'segchat'));
    return;
  }
  const via = on.isMine(c) ? 'hosting' : s.links[s.current];
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
    const why = on.writeReason(c);
    actions.push(h('button', {
      type: 'button', class: 'btn ghost small', id: 'go-live', disabled: !!why || !!streams.own,
      title: why || (streams.own ? `You are live in #${streams.own.channel}; stop that stream first.` : 'Stream your camera to this channel'),
      'aria-label': why ? `Go live (unavailable: ${why})` : 'Go live',
      onclick: () => streams.openSetup(c.name),
    }, icon('video'), h('span', { class: 'hide-phone' }, 'Go live')));
  }
  if (c && c.visibility === 'private' && (on.isMine(c) || c.my_role === 'moderator')) {
    actions.push(h('button', {
      type: 'button', class: 'btn ghost small', id: 'invite-to-channel', 'aria-label': `Invite people to #${c.name}`, title: `Invite people to #${c.name}`,
      onclick: () => on.invite(c),
    }, icon('users'), h('span', { class: 'hide-phone' }, 'Invite')));
  }
  if (canManage(c)) {
    actions.push(h('button', {
      type: 'button', class: 'icon-btn', id: 'channel-settings', 'aria-label': 'Channel settings', title: 'Channel settings',
      'aria-haspopup': 'dialog', onclick: () => on.settings(c),
    }, icon('gear')));
  }
  if (c && c.my_role && !on.isMine(c)) {
    actions.push(h('button', { type: 'button', class: 'btn ghost small', id: 'leave-channel', 'aria-label': `Leave #${c.name}`, title: `Leave #${c.name}`, onclick: () => on.leave(c.name) }, icon('leave'), h('span', { class: 'hide-phone' }, 'Leave')));
  }
  // The title, and under it the topic on one line (all of it in the
  // tooltip, and for screen readers).
  const title = channelTitle(c, s.current);
  const topic = c && c.topic ? c.topic : '';
  clear(el,
    h('div', { class: 'chan-id' },
      h('h1', { class: 'chan-title', id: 'chan-title', title: title === s.current ? null : `${title} (#${s.current})` },
        icon(c && c.visibility !== 'public' ? 'lock' : 'hash'), h('span', {}, title)),
      topic ? h('p', { class: 'chan-topic', id: 'chan-topic', title: topic }, topic) : null),
    h('div', { class: 'chips' }, chips),
    c ? h('span', { class: 'head-owner hide-phone' }, `host: ${c.owner}`) : null,
    actions);
}

// The banners in `el`: this tab's node down, the server unreachable, the
// open channel's host away.
export function renderBanners(el, s, on) {
  const out = [];
  if (!s.nodeUp) {
    out.push(h('div', { class: 'banner warn', role: 'alert', id: 'banner-node' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Your node is not running'), ' — nothing here is live. Start it again with ',
        h('code', {}, 'segchat up'), ' (or ', h('code', {}, 'segchat node'), ') in a terminal; this tab reconnects by itself, and what you type stays here.')));
    clear(el, out);
    return;
  }
  if (!s.serverConnected) {
    out.push(h('div', { class: 'banner warn', role: 'status', id: 'banner-server' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Server unreachable'), ' — reconnecting. You can keep reading; what you write waits in your outbox.')));
  }
  const c = on.channelInfo(s.current);
  const via = c && !on.isMine(c) && on.canRead(c) ? s.links[s.current] : null;
  if (via === 'server') {
    out.push(h('div', { class: 'banner host', role: 'status', id: 'banner-host' }, icon('cloud'),
      h('span', {}, h('strong', {}, "Host offline — reading the server's backup."), ` Messages still go through; ${c.owner}'s node catches up when it returns.`)));
  } else if (via === 'offline') {
    out.push(h('div', { class: 'banner warn', role: 'status', id: 'banner-host' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Host and server unreachable'), ' — showing what this node has. Messages are sent when a connection returns.')));
  }
  clear(el, out);
}
