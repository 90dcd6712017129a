// Listeners on the whole page: keyboard shortcuts (Escape closes what
// covers the conversation, Ctrl/⌘+K searches, Alt+↑/↓ moves between
// channels), input telling the node you are here (presence), marking
// read when the tab is shown again, the phone layout turning on or off,
// and a click elsewhere closing the status menu.

import { api } from './api.js';
import { groupChannels } from './sidebar.js';
import { s, ui, phone } from './state.js';

// Installs them once, at start. `deps`: closing overlays, opening a
// channel, marking read, DMs, and drawing the layout, panel and sidebar.
export function listenToPage(deps) {
  const { dms, closeOverlays, openChannel, markRead, renderLayout, renderPanel, renderSide } = deps;

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
}
