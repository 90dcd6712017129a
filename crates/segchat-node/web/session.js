// You: your status, signing out, and a session that ends (signed out
// elsewhere, or the node forgot it) — what is kept about the last one is
// dropped and the sign-in screen shown.

import { api } from './api.js';
import { announce } from './dom.js';
import { PRESENCE_LABEL } from './format.js';
import { s, streams, phone } from './state.js';

// `deps`: the message actions, friends and DMs (each reset), drawing the
// sidebar and the panel, and the sign-in screen.
export function createSession(deps) {
  const { msgActions, friends, dms, renderSide, renderPanel, showSignIn } = deps;

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

  return { setStatus, signOut, resetData, sessionGone };
}
