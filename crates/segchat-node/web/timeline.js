// The open channel's timeline: drawing it (and its empty states) while
// keeping focus and scroll position across redraws, the newest and the
// older pages from the node, a message as the node now has it (an edit,
// a delete, a reaction), the "N new messages" bar, and jumping to one
// message (a search result, a quote, a mention). While a direct-message
// conversation is open, dms.js draws the timeline instead.

import { api, enc } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { renderTimeline, sortMessages, merge } from './messages.js';
import { roveTimeline, focusAddress, findAddress } from './timeline-keys.js';
import { s, ui, phone, chan, channelInfo, isMine, canRead, debounce, linksMark, applyLinks } from './state.js';

// The state is state.js's; `deps` brings what the rest of the page does:
// the message actions, the open DM, shared files, opening a channel, the
// create dialog, the layout, the header and banners, and a notice in the
// corner.
export function createTimeline(deps) {
  const {
    msgActions, dms, fileView, openChannel, openCreateDialog, renderLayout, renderHeader, renderBanners,
    showNotice,
  } = deps;

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
      files: fileView,
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
    const mark = linksMark();
    const r = await api('GET', `/channels/${enc(name)}/messages?limit=50`);
    for (const m of r.messages) merge(st, m);
    st.gaps = r.gaps || [];
    if (r.via) applyLinks({ [name]: r.via }, mark);
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

  return {
    atBottom, drawTimeline, applyUpdate, editLast, focusComposer, loadLatest, loadOlder,
    fillViewport, refreshChannel, renderNewBar, jumpTo,
  };
}
