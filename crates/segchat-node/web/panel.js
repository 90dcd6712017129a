// The side panel: the open channel's members (or the open DM's), search
// results (search.js) or friends (friends.js) — which one is open, drawing
// it, and loading a channel's members.

import { api, enc } from './api.js';
import { clear } from './dom.js';
import { renderMembers } from './members.js';
import { s, ui } from './state.js';

// `deps`: the search panel, friends and DMs (each draws its own), and
// the layout (the panel's open class).
export function createPanel(deps) {
  const { search, friends, dms, renderLayout } = deps;

  // Opens the friends panel on `tab`.
  function openFriends(tab) {
    friends.tab = tab;
    if (s.panel !== 'friends') togglePanel('friends'); else renderPanel();
  }

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

  return { openFriends, loadMembers, togglePanel, renderPanel, runSearch };
}
