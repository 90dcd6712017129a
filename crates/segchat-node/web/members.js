// The members panel: who is in the open channel, online first, the host
// on top of each group, my own presence as I set it.

import { h, clear, icon } from './dom.js';
import { displayName, PRESENCE_LABEL } from './format.js';
import { avatar } from './sidebar.js';

// Draws the members of the open channel into `panel`; `close()` hides it.
export function renderMembers(panel, s, close) {
  panel.setAttribute('aria-label', 'Members');
  const list = s.current ? s.members.get(s.current) : null;
  const closeBtn = h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Close members', onclick: close }, icon('close'));
  if (!list) {
    clear(panel, h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, 'Members'), closeBtn),
      h('p', { class: 'empty-line' }, s.current ? 'Members are shown to people in the channel.' : 'Pick a channel.'));
    return;
  }
  const shown = list.map((m) => ({ ...m, presence: m.username === s.me.username ? s.me.status : m.presence }));
  const online = shown.filter((m) => m.presence === 'online' || m.presence === 'idle');
  const offline = shown.filter((m) => !(m.presence === 'online' || m.presence === 'idle'));
  const byName = (a, b) => (a.role === 'owner' ? -1 : b.role === 'owner' ? 1 : a.username.localeCompare(b.username));
  const group = (title, ms) => h('section', { class: 'member-group' },
    h('h3', {}, `${title} — ${ms.length}`),
    h('ul', { role: 'list' }, ms.sort(byName).map((x) => memberItem(x, s.me))));
  clear(panel,
    h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, `Members — ${list.length}`), closeBtn),
    h('div', { class: 'panel-body', id: 'member-list' }, group('Online', online), group('Offline', offline)));
}

function memberItem(m, self) {
  const me = m.username === self.username;
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
