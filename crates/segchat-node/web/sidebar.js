// The channel sidebar: "Friends" (with requests waiting), direct
// messages (drawn by dms.js), then channels hosted by me, joined,
// discoverable; each with its
// host's status, an unread badge and, apart from it, a red "@N" badge of
// unread messages that mention me. "Enable notifications" (for mentions)
// shows until the browser was asked. The user panel with the status
// picker sits at the bottom.

import { h, clear, icon } from './dom.js';
import { displayName, colorOf, initials, PRESENCE_LABEL, VISIBILITY_LABEL, channelTitle } from './format.js';

export function groupChannels(channels, me) {
  const hosted = [], joined = [], discover = [];
  for (const c of channels) {
    if (me.kind === 'user' && c.owner === me.username) hosted.push(c);
    else if (c.my_role || me.kind === 'visitor') joined.push(c);
    else discover.push(c);
  }
  const byName = (a, b) => channelTitle(a).localeCompare(channelTitle(b)) || a.name.localeCompare(b.name);
  return { hosted: hosted.sort(byName), joined: joined.sort(byName), discover: discover.sort(byName) };
}

// What the dot beside a channel says about its host.
export function hostState(c, me, links) {
  if (me.kind === 'user' && c.owner === me.username) return { cls: 'hosting', label: 'Hosted by this node' };
  const via = links[c.name];
  if (via === 'host') return { cls: 'online', label: `Host ${c.owner} online (P2P)` };
  if (via === 'server') return { cls: 'away', label: `Host ${c.owner} offline — server backup` };
  if (via === 'offline') return { cls: 'offline', label: 'Unreachable — local history only' };
  return c.host ? { cls: 'online', label: `Host ${c.owner} online` } : { cls: 'offline', label: `Host ${c.owner} offline` };
}

export function renderSidebar(el, s, on) {
  const { hosted, joined, discover } = groupChannels(s.channels, s.me);
  const visitor = s.me.kind === 'visitor';

  function item(c) {
    const unread = s.unread[c.name] || 0;
    const mentions = Math.min((s.mentions && s.mentions[c.name]) || 0, unread || Infinity);
    const current = s.current === c.name;
    const hs = hostState(c, s.me, s.links);
    const live = !!(s.isLive && s.isLive(c.name));
    const hidden = (text) => h('span', { class: 'visually-hidden' }, text);
    // The button's name is its content: what shows, plus words for what
    // only shows as colour or a dot (so name and visible text agree).
    return h('li', {},
      h('button', {
        type: 'button',
        class: `chan${current ? ' current' : ''}${unread ? ' has-unread' : ''}${mentions ? ' has-mention' : ''}${live ? ' live' : ''}`,
        'aria-current': current ? 'page' : null,
        title: hs.label,
        dataset: { channel: c.name },
        onclick: () => on.open(c.name),
      },
      icon(c.visibility === 'public' ? 'hash' : 'lock'),
      h('span', { class: 'chan-name' }, channelTitle(c)),
      hidden(`, ${VISIBILITY_LABEL[c.visibility] || ''} channel, ${hs.label}`),
      live ? [hidden(', '), h('span', { class: 'live-badge small', title: 'Someone is live here' }, 'LIVE')] : null,
      h('span', { class: `host-dot ${hs.cls}`, 'aria-hidden': 'true' }),
      mentions ? [hidden(', '), h('span', { class: 'badge mention-badge', title: `${mentions} mention${mentions === 1 ? '' : 's'} of you` }, `@${mentions > 99 ? '99+' : mentions}`),
        hidden(` mention${mentions === 1 ? '' : 's'} of you`)] : null,
      unread ? [hidden(', '), h('span', { class: 'badge' }, unread > 99 ? '99+' : String(unread)), hidden(' unread')] : null));
  }

  function section(id, title, list, extra) {
    return h('section', { class: 'chan-section', 'aria-labelledby': id },
      h('div', { class: 'section-head' },
        h('h2', { id }, title),
        extra || null),
      list.length
        ? h('ul', { class: 'chan-list', role: 'list' }, list.map(item))
        : h('p', { class: 'empty-line' }, id === 'sec-hosted' ? 'Create one with +' : 'Nothing here yet'));
  }

  const createBtn = visitor ? null : h('button', {
    type: 'button', class: 'icon-btn small', 'aria-label': 'Create a channel', title: 'Create a channel',
    id: 'create-channel', onclick: on.create,
  }, icon('plus'));

  const sections = visitor
    ? [section('sec-joined', 'Channels you can read', joined)]
    : [
      section('sec-hosted', 'Hosted by me', hosted, createBtn),
      section('sec-joined', 'Joined', joined),
      section('sec-discover', 'Discover', discover),
    ];

  const status = s.me.status;
  const serverDot = s.serverConnected ? 'online' : 'offline';
  clear(el,
    h('header', { class: 'side-head' },
      h('img', { src: '/assets/favicon.svg', alt: '', width: '24', height: '24' }),
      h('span', { class: 'side-title' }, 'segchat'),
      h('span', { class: `server-pill ${serverDot}`, title: s.serverConnected ? `Server ${s.node.server_addr} connected` : `Server ${s.node.server_addr} unreachable` },
        h('span', { class: `dot ${serverDot}`, 'aria-hidden': 'true' }),
        s.serverConnected ? 'server' : 'no server'),
      h('button', { type: 'button', class: 'icon-btn small only-phone', 'aria-label': 'Close channel list', onclick: on.closeSidebar }, icon('close'))),
    h('nav', { class: 'chan-nav', 'aria-label': 'Channels' },
      visitor ? null : friendsButton(on),
      visitor ? null : on.dms(),
      sections,
      visitor ? null : h('button', { type: 'button', class: 'btn ghost small invite-btn', id: 'invite-people', onclick: on.invite }, icon('users'), 'Invite people'),
      s.notify === 'default' ? h('button', {
        type: 'button', class: 'btn ghost small invite-btn notify-btn', id: 'enable-notifications', onclick: on.enableNotifications,
        title: 'Get a browser notification when someone mentions you while this tab is hidden',
      }, icon('bell'), 'Enable notifications') : null),
    h('footer', { class: 'me-panel' },
      h('button', {
        type: 'button', class: 'me-btn', id: 'status-button', 'aria-haspopup': 'menu',
        'aria-expanded': String(!!s.statusMenuOpen),
        onclick: on.toggleStatusMenu,
      },
      avatar(s.me.username, status),
      // The button's name is its visible text (WCAG 2.5.3), then what it does.
      h('span', { class: 'me-text' },
        h('span', { class: 'me-name' }, s.me.display_name || displayName(s.me.username)),
        h('span', { class: 'me-status' }, ' ', visitor ? 'Visitor · read only' : PRESENCE_LABEL[status]),
        h('span', { class: 'visually-hidden' }, ', change status'))),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Sign out', title: 'Sign out', onclick: on.signOut }, icon('logout')),
      s.statusMenuOpen ? statusMenu(status, on) : null));
}

// "Friends", with the count of requests waiting for my answer.
function friendsButton(on) {
  const waiting = on.friendRequests();
  return h('button', { type: 'button', class: 'btn ghost small invite-btn friends-btn', id: 'friends-open', onclick: on.friends },
    icon('users'), 'Friends',
    waiting ? [h('span', { class: 'visually-hidden' }, ', '), h('span', { class: 'badge' }, String(waiting)),
      h('span', { class: 'visually-hidden' }, ` request${waiting === 1 ? '' : 's'} waiting`)] : null);
}

function statusMenu(current, on) {
  const opts = [
    ['online', 'Online', 'Everyone sees you online'],
    ['idle', 'Idle', 'Shown as away'],
    ['invisible', 'Invisible', 'You appear offline to others, and can still chat'],
  ];
  return h('div', { class: 'menu', role: 'menu', id: 'status-menu', 'aria-label': 'Set your status', onkeydown: (e) => menuKeys(e, on) },
    opts.map(([v, label, hint]) => h('button', {
      type: 'button', role: 'menuitemradio', 'aria-checked': String(v === current),
      class: 'menu-item', dataset: { status: v }, onclick: () => on.setStatus(v),
    }, h('span', { class: `dot ${v}`, 'aria-hidden': 'true' }),
    h('span', { class: 'menu-text' }, h('span', {}, label), h('small', {}, hint)))));
}

function menuKeys(e, on) {
  const items = [...e.currentTarget.querySelectorAll('[role^=menuitem]')];
  const i = items.indexOf(document.activeElement);
  if (e.key === 'ArrowDown') { e.preventDefault(); items[(i + 1) % items.length].focus(); }
  if (e.key === 'ArrowUp') { e.preventDefault(); items[(i - 1 + items.length) % items.length].focus(); }
  if (e.key === 'Escape') { e.preventDefault(); on.toggleStatusMenu(); }
}

export function avatar(username, presence, size = 'md') {
  const el = h('span', { class: `avatar ${size}`, 'aria-hidden': 'true' },
    h('span', { class: 'avatar-letter' }, initials(username)),
    presence ? h('span', { class: `presence ${presence}` }) : null);
  // CSSOM, not a style attribute: the CSP forbids inline style attributes.
  el.style.setProperty('--avatar', colorOf(username));
  return el;
}
