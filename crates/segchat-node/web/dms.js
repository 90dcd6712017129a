// Direct messages, end-to-end encrypted by the node (`/dms…`): the
// "Direct messages" section of the sidebar (the other person's presence
// when known, an unread badge, "+" to write to someone by name), and an
// open conversation in the main area — its header, its history (older
// pages on scroll), the delivery state of my own messages (sending, sent,
// delivered, read, not delivered) and a message box. Live from the
// `direct_message` and `direct_message_updated` events. What the node
// says is the only truth: rows merge by id and a state never moves back.
// A message can be replied to, reacted to, and (my own) edited and
// deleted as in channels: the toolbar, the editor and the confirmation
// are message-actions.js's; dm-messages.js draws one message.
//
// A conversation is named by its other members (one username, or several
// joined by `,`); while one is open no channel is (`s.current`, state.js,
// is null) and the header, timeline, composer and members panel are
// handed to this module.

import { api, enc } from './api.js';
import { h, clear, icon, announce, toast } from './dom.js';
import { displayName, PRESENCE_LABEL } from './format.js';
import { avatar } from './sidebar.js';
import { parse, excerpt } from './markdown.js';
import { roveTimeline, focusAddress, findAddress } from './timeline-keys.js';
import { notificationState } from './mentions.js';
import { renderDmComposer, drawDmReply, openNewDmDialog } from './dm-compose.js';
import { MessageActions } from './message-actions.js';
import { dmTimeline, asChannelRow } from './dm-messages.js';

const PAGE = 50;
// The node's order of states (store/dms.rs): a row keeps the furthest.
const RANK = { pending: 0, failed: 1, sent: 2, received: 3, delivered: 4, read: 5 };

const same = (a, b) => a.toLowerCase() === b.toLowerCase();
const newestFirst = (a, b) => (b.last.sent_at_ms - a.last.sent_at_ms) || (a.last.id < b.last.id ? 1 : -1);

function order(a, b) {
  return (a.sent_at_ms - b.sent_at_ms) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

// `m` over `old`, keeping the furthest state known.
function mergeRow(old, m) {
  if (!old) return { ...m };
  const back = (RANK[m.state] ?? 0) < (RANK[old.state] ?? 0);
  return back ? { ...old, ...m, state: old.state, path: old.path ?? m.path, error: old.error } : { ...old, ...m };
}

// "ann", "ann, bob" (a group).
export function conversationTitle(name) {
  return (name || '').split(',').map(displayName).join(', ');
}

export class DirectMessages {
  // deps: me(), ui() (app.js's elements), limit() (the text limit),
  // isPhone(), presenceOf(username) from friends and members (or null),
  // friendNames(), opening() before a conversation opens (the app leaves
  // its channel), redraw() everything, changed() the sidebar.
  constructor(deps) {
    this.deps = deps;
    // Reply, react, edit and delete, on rows in a channel's shape
    // (dm-messages.js `asChannelRow`: the conversation is the `channel`).
    this.actions = new MessageActions({
      me: () => this.deps.me(),
      // Both sides write in a conversation; only my own are mine to delete.
      canWrite: () => true,
      canModerate: () => false,
      apply: (row) => this.apply(row),
      redraw: () => this.drawTimeline(),
      reply: (row) => this.startReply(row),
      limit: () => this.deps.limit(),
      dialogHost: () => this.deps.ui().layout,
      notice: (text) => toast(this.deps.ui().layout, text),
      at: (row) => `/dms/${enc(row.channel)}/messages/${enc(row.id)}`,
      textField: 'text',
      measure: (text) => [[...text].length, 'characters'],
    });
    this.reset();
  }

  reset() {
    // [{ conversation, last, unread }], the most recent first.
    this.list = [];
    // Per conversation: { byId, loaded, loadedAll, loading, activeMsg }.
    this.convs = new Map();
    this.open = null;
    this.drafts = new Map();
    this.errors = new Map();
    this.seen = new Map();
    this.trees = new Map();
    // Per conversation: the message the next one answers ({ id, author, body }).
    this.replyTo = new Map();
    // The message a quote pointed to: { id, until } while it is flashed.
    this.flash = null;
    this.actions.reset();
    this.actions.revealed.clear();
    clearTimeout(this.readTimer);
    clearTimeout(this.recountTimer);
  }

  // ------------------------------------------------------------ state

  conv(name) {
    if (!this.convs.has(name)) this.convs.set(name, { byId: new Map(), loaded: false, loadedAll: false, loading: false, activeMsg: null });
    return this.convs.get(name);
  }

  entry(name) {
    return this.list.find((e) => e.conversation === name) || null;
  }

  // The name the node keeps a conversation under (user names ignore case).
  known(name) {
    const e = this.list.find((x) => same(x.conversation, name));
    if (e) return e.conversation;
    for (const k of this.convs.keys()) if (same(k, name)) return k;
    return name;
  }

  unreadTotal() {
    return this.list.reduce((n, e) => n + (e.unread || 0), 0);
  }

  // Online, idle, offline…, or null when this node does not know.
  presenceOf(name) {
    if (!name || name.includes(',')) return null;
    return this.seen.get(name) || this.deps.presenceOf(name) || null;
  }

  async load() {
    try {
      this.list = (await api('GET', '/dms')).conversations;
    } catch { /* a visitor, or signed out: nothing to list */ }
    this.seen.clear();
    this.deps.changed();
  }

  // After a reconnect: the newest page of the open conversation, and it
  // is read if it is on screen.
  async refresh() {
    const name = this.open;
    if (!name || !this.conv(name).loaded) return;
    try { await this.loadLatest(name); } catch { return; }
    if (this.open !== name) return;
    this.drawTimeline();
    if (!document.hidden) this.markRead(name);
  }

  async loadLatest(name) {
    const c = this.conv(name);
    const r = await api('GET', `/dms/${enc(name)}?limit=${PAGE}`);
    for (const m of r.messages) c.byId.set(m.id, mergeRow(c.byId.get(m.id), m));
    if (!c.loaded) {
      c.loaded = true;
      c.loadedAll = r.messages.length < PAGE;
    }
  }

  async loadOlder() {
    const name = this.open;
    if (!name) return;
    const c = this.conv(name);
    if (!c.loaded || c.loading || c.loadedAll) return;
    const oldest = [...c.byId.values()].sort(order)[0];
    if (!oldest) { c.loadedAll = true; return; }
    c.loading = true;
    this.drawTimeline();
    try {
      const r = await api('GET', `/dms/${enc(name)}?limit=${PAGE}&before_ms=${oldest.sent_at_ms}&before_id=${enc(oldest.id)}`);
      for (const m of r.messages) c.byId.set(m.id, mergeRow(c.byId.get(m.id), m));
      c.loadedAll = r.messages.length < PAGE;
    } catch (e) {
      announce(`Could not load older messages: ${e.reason}`);
    } finally {
      c.loading = false;
    }
    if (this.open === name) {
      this.drawTimeline();
      const t = this.deps.ui().timeline;
      if (t.scrollHeight <= t.clientHeight + 10) this.loadOlder();
    }
  }

  // Row `m` as the node now has it: into its conversation (if shown) and
  // the list.
  keep(m, { add = true } = {}) {
    const c = this.convs.get(m.conversation);
    if (c && (add || c.byId.has(m.id))) c.byId.set(m.id, mergeRow(c.byId.get(m.id), m));
    let e = this.entry(m.conversation);
    if (!e) {
      if (!add) return null;
      e = { conversation: m.conversation, last: { ...m }, unread: 0 };
      this.list.push(e);
    } else if (e.last.id === m.id) {
      e.last = mergeRow(e.last, m);
    } else if (add && order(e.last, m) < 0) {
      e.last = { ...m };
    }
    this.list.sort(newestFirst);
    return e;
  }

  // ------------------------------------------------------------ opening

  // Opens the conversation with `name` (a username, or several joined
  // by `,`).
  async show(name, { focus = true } = {}) {
    const me = this.deps.me();
    if (!me || me.kind !== 'user') return;
    name = this.known(name);
    this.saveDraft();
    this.deps.opening();
    const switching = this.open !== name;
    this.open = name;
    history.replaceState(null, '', `#${enc(`@${name}`)}`);
    if (switching) {
      this.conv(name).activeMsg = null;
      this.actions.pickerFor = null;
      this.actions.tapped = null;
    }
    this.deps.redraw();
    this.drawTimeline({ bottom: true });
    if (focus && !this.deps.isPhone()) this.focusBox();
    const c = this.conv(name);
    try {
      await this.loadLatest(name);
    } catch (e) {
      announce(`Could not load the conversation: ${e.reason}`);
      c.loaded = true;
    }
    if (this.open !== name) return;
    this.drawTimeline({ bottom: true });
    this.markRead(name);
  }

  // The app opens a channel: this conversation is left (its draft kept).
  close() {
    if (!this.open) return;
    this.saveDraft();
    clearTimeout(this.readTimer);
    this.open = null;
  }

  saveDraft() {
    const ta = this.open && this.deps.ui() && this.deps.ui().composer.querySelector('textarea[data-dm]');
    if (ta && ta.dataset.dm === this.open) this.drafts.set(this.open, ta.value);
  }

  focusBox() {
    const ta = this.deps.ui().composer.querySelector('textarea');
    if (ta) ta.focus();
  }

  async markRead(name) {
    const e = this.entry(name);
    try {
      await api('POST', `/dms/${enc(name)}/read`);
    } catch { return; /* harmless: stays unread */ }
    if (e) e.unread = 0;
    this.deps.changed();
  }

  // Messages arriving in the open conversation are read a moment later,
  // gathered.
  scheduleRead(name) {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      if (this.open === name && !document.hidden) this.markRead(name);
    }, 300);
  }

  // The tab is shown again: what arrived meanwhile in the open one is read.
  visible() {
    const e = this.open && this.entry(this.open);
    if (e && e.unread && !document.hidden) this.markRead(this.open);
  }

  // ------------------------------------------------------------ events

  event(ev) {
    const m = ev.message;
    const me = this.deps.me();
    if (!m || !me) return;
    const name = m.conversation;
    const mine = m.sender === me.username;
    if (ev.type === 'direct_message') {
      const e = this.keep(m);
      if (!mine) {
        if (this.open === name && !document.hidden) {
          this.scheduleRead(name);
        } else if (m.state === 'received') {
          e.unread = (e.unread || 0) + 1;
          if (this.open !== name) announce(`New direct message from ${displayName(m.sender)}`);
          this.notify(m);
        }
      }
    } else {
      // A new state, or an edit, a deletion or a reaction (from anyone).
      const before = this.entry(name);
      const was = this.convs.get(name) && this.convs.get(name).byId.get(m.id);
      this.updated(m);
      // Read here or on another of my devices. Whether this row was read
      // before is not known when its conversation is not loaded: the
      // node counts.
      if (!mine && m.state === 'read' && before && before.unread) {
        if (!was) this.recount();
        else if (was.state !== 'read') before.unread -= 1;
      }
    }
    if (this.open === name && this.deps.ui()) {
      const t = this.deps.ui().timeline;
      const stick = atBottom(t) || (ev.type === 'direct_message' && mine);
      this.drawTimeline({ bottom: stick });
      if (!stick && ev.type === 'direct_message') this.deps.ui().jump.hidden = false;
    }
    this.deps.changed();
  }

  // Row `m` changed (its state, text or reactions): the quotes of replies
  // to it follow; a deleted one is no longer edited.
  updated(m) {
    const c = this.convs.get(m.conversation);
    if (c) {
      for (const r of c.byId.values()) {
        if (r.reply_to === m.id && r.quote) c.byId.set(r.id, { ...r, quote: { ...r.quote, body: m.text, deleted: !!m.deleted } });
      }
    }
    this.keep(m, { add: false });
    if (m.deleted && this.actions.isEditing(asChannelRow(m))) this.actions.editing = null;
  }

  // The node's answer to my edit, deletion or reaction.
  apply(m) {
    this.updated(m);
    this.deps.changed();
    if (this.open === m.conversation) this.drawTimeline();
  }

  // The unread counts as the node has them, a moment later.
  recount() {
    clearTimeout(this.recountTimer);
    this.recountTimer = setTimeout(async () => {
      let list;
      try { list = (await api('GET', '/dms')).conversations; } catch { return; }
      for (const x of list) {
        const e = this.entry(x.conversation);
        if (e) e.unread = x.unread;
      }
      this.deps.changed();
    }, 300);
  }

  // A presence event.
  presence(username, status) {
    this.seen.set(username, status);
    if (!this.list.some((e) => e.conversation === username) && this.open !== username) return;
    this.deps.changed();
    if (this.open === username && this.deps.ui()) this.renderHeader(this.deps.ui().headMain);
  }

  // A browser notification for a message while the tab is hidden (when
  // allowed; "Enable notifications" asks).
  notify(m) {
    if (!document.hidden || notificationState() !== 'granted') return;
    try {
      const n = new Notification(displayName(m.sender), { body: excerpt(said(m), 160), tag: `dm-${m.id}`, icon: '/assets/favicon.svg' });
      n.onclick = () => { window.focus(); this.show(m.conversation); n.close(); };
    } catch { /* not allowed here */ }
  }

  // ------------------------------------------------------------ sending

  async send(name, text, replyTo = null) {
    const r = await api('POST', `/dms/${enc(name)}`, replyTo ? { text, reply_to: replyTo } : { text });
    const m = r.message;
    // The server spells names its way ("Bob" is bob): follow it.
    if (m.conversation !== name && this.open === name) {
      const c = this.conv(name);
      this.convs.delete(name);
      if (!this.convs.has(m.conversation)) this.convs.set(m.conversation, c);
      this.open = m.conversation;
      history.replaceState(null, '', `#${enc(`@${m.conversation}`)}`);
      this.deps.redraw();
    }
    this.took(m);
  }

  // My message `m` as the node took it (a text, or a file from files.js).
  took(m) {
    this.keep(m);
    this.deps.changed();
    if (this.open === m.conversation) this.drawTimeline({ bottom: true });
  }

  // ------------------------------------------------------------ drawing

  // The sidebar's section (sidebar.js).
  sidebarSection() {
    const shown = [...this.list];
    if (this.open && !this.entry(this.open)) shown.unshift({ conversation: this.open, last: null, unread: 0 });
    const hidden = (text) => h('span', { class: 'visually-hidden' }, text);
    const item = (e) => {
      const current = this.open === e.conversation;
      const unread = current && !document.hidden ? 0 : e.unread || 0;
      const p = this.presenceOf(e.conversation);
      const title = conversationTitle(e.conversation);
      return h('li', {},
        h('button', {
          type: 'button',
          class: `chan dm${current ? ' current' : ''}${unread ? ' has-unread' : ''}`,
          'aria-current': current ? 'page' : null,
          title: e.last ? `${displayName(e.last.sender)}: ${e.last.deleted ? 'message deleted' : excerpt(said(e.last), 80)}` : null,
          dataset: { dm: e.conversation },
          onclick: () => this.show(e.conversation),
        },
        avatar(e.conversation.split(',')[0], p, 'xs'),
        h('span', { class: 'chan-name' }, title),
        hidden(`, direct message${p ? `, ${PRESENCE_LABEL[p] || p}` : ''}`),
        unread ? [hidden(', '), h('span', { class: 'badge mention-badge' }, unread > 99 ? '99+' : String(unread)), hidden(' unread')] : null));
    };
    return h('section', { class: 'chan-section dm-section', 'aria-labelledby': 'sec-dms' },
      h('div', { class: 'section-head' },
        h('h2', { id: 'sec-dms' }, 'Direct messages'),
        h('button', {
          type: 'button', class: 'icon-btn small', id: 'dm-new', 'aria-label': 'Write a direct message', title: 'Write a direct message',
          'aria-haspopup': 'dialog', onclick: () => this.openNewDialog(),
        }, icon('plus'))),
      shown.length
        ? h('ul', { class: 'chan-list', role: 'list', id: 'dm-list' }, shown.map(item))
        : h('p', { class: 'empty-line' }, 'Write to someone with +'));
  }

  // The header of the open conversation.
  renderHeader(el) {
    const name = this.open;
    const p = this.presenceOf(name);
    const title = conversationTitle(name);
    clear(el,
      h('div', { class: 'chan-id dm-id' },
        h('h1', { class: 'chan-title', id: 'chan-title', title }, icon('at'), h('span', {}, title))),
      h('div', { class: 'chips' },
        p ? h('span', { class: 'chip link dm-presence', id: 'dm-presence', title: `${title} is ${(PRESENCE_LABEL[p] || p).toLowerCase()}` },
          h('span', { class: `dot ${p}`, 'aria-hidden': 'true' }), PRESENCE_LABEL[p] || p) : null,
        h('span', { class: 'chip', title: 'Sealed on this device for theirs: the server carries it and cannot read it' },
          icon('lock'), h('span', { class: 'chip-text' }, 'End-to-end encrypted'))));
  }

  // The members panel while a conversation is open: who is in it.
  renderMembers(panel, close) {
    const me = this.deps.me();
    panel.setAttribute('aria-label', 'Members');
    const people = [me.username, ...this.open.split(',')];
    const item = (u) => {
      const self = u === me.username;
      const p = self ? me.status : this.presenceOf(u);
      const label = self && p === 'invisible' ? 'Invisible (others see you offline)' : p ? PRESENCE_LABEL[p] : 'Presence unknown';
      return h('li', { class: `member ${p || 'offline'}`, dataset: { username: u }, 'aria-label': `${displayName(u)}${self ? ' (you)' : ''}, ${label}` },
        avatar(u, p),
        h('span', { class: 'member-name', 'aria-hidden': 'true' }, displayName(u), self ? h('span', { class: 'tag' }, 'you') : null),
        h('span', { class: 'member-status', 'aria-hidden': 'true' }, label));
    };
    clear(panel,
      h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, `Members — ${people.length}`),
        h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Close members', onclick: close }, icon('close'))),
      h('div', { class: 'panel-body', id: 'member-list' },
        h('section', { class: 'member-group' },
          h('h3', {}, 'In this conversation'),
          h('ul', { role: 'list' }, people.map(item)))));
  }

  setActive(id) {
    if (this.open) this.conv(this.open).activeMsg = id;
  }

  // The open conversation's messages in the timeline, as channels show
  // theirs (timeline-keys.js moves through them).
  drawTimeline(opts = {}) {
    const ui = this.deps.ui();
    if (!ui || !this.open) return;
    const t = ui.timeline;
    const name = this.open;
    const c = this.conv(name);
    const me = this.deps.me();
    const bottom = opts.bottom || atBottom(t);
    const fromBottom = t.scrollHeight - t.scrollTop;
    const hadFocus = t.contains(document.activeElement) && document.activeElement !== t;
    const focused = focusAddress(t);
    const messages = [...c.byId.values()].sort(order);
    const title = conversationTitle(name);
    t.setAttribute('aria-label', `Direct messages with ${title}`);
    this.actions.beforeDraw();
    const lastOwn = [...messages].reverse().find((m) => m.sender === me.username);
    clear(t, dmTimeline(messages, {
      name,
      title,
      state: c,
      me,
      acts: this.actions,
      newestOwn: lastOwn ? lastOwn.id : null,
      tree: (m) => this.tree(m),
      lookup: (id) => c.byId.get(id),
      files: this.deps.files(),
      onQuote: (id) => this.jumpTo(id),
      flash: this.flash && this.flash.until > Date.now() ? this.flash.id : null,
    }));
    const active = roveTimeline(t, c.activeMsg);
    const again = hadFocus ? findAddress(t, focused) || active : null;
    if (again) again.focus({ preventScroll: true });
    if (bottom) t.scrollTop = t.scrollHeight;
    else t.scrollTop = t.scrollHeight - fromBottom;
    this.actions.afterDraw(t);
  }

  // The parsed text, kept while the text stays the same.
  tree(m) {
    const had = this.trees.get(m.id);
    if (had && had.text === m.text) return had.tree;
    const tree = parse(m.text);
    this.trees.set(m.id, { text: m.text, tree });
    return tree;
  }

  // Shows the message `id` of the open conversation (what a reply
  // quotes), loading older pages until it is there; says so when it is
  // not in the history this node has.
  async jumpTo(id) {
    const name = this.open;
    const c = this.conv(name);
    for (let i = 0; i < 40 && this.open === name && !c.byId.has(id) && !c.loadedAll; i++) {
      if (c.loading) await new Promise((r) => setTimeout(r, 100));
      else await this.loadOlder();
    }
    if (this.open !== name) return;
    const t = this.deps.ui().timeline;
    const el = t.querySelector(`article[data-id="${CSS.escape(id)}"]`);
    if (!el) {
      toast(this.deps.ui().layout, 'The original message is not in the history this node has.');
      return;
    }
    c.activeMsg = id;
    roveTimeline(t, id);
    el.scrollIntoView({ block: 'center' });
    el.focus({ preventScroll: true });
    // Kept through redraws meanwhile.
    this.flash = { id, until: Date.now() + 2000 };
    el.classList.add('flash');
    setTimeout(() => {
      const now = this.open === name && t.querySelector(`article[data-id="${CSS.escape(id)}"]`);
      if (now) now.classList.remove('flash');
    }, 2000);
  }

  // Reply to `row` (from the toolbar): the bar above the box, and the
  // box has focus.
  startReply(row) {
    const name = this.open;
    const el = this.deps.ui().composer;
    if (!name) return;
    const r = { id: row.id, author: row.author, body: row.body };
    this.replyTo.set(name, r);
    drawDmReply(el, r, this.composerOn(name));
    const ta = el.querySelector('#composer-input');
    if (ta) ta.focus();
  }

  // My last message in the open conversation, to edit (↑ in an empty box).
  editLast() {
    if (!this.open) return false;
    const mine = [...this.conv(this.open).byId.values()].sort(order).map(asChannelRow).filter((r) => this.actions.canEdit(r));
    return mine.length ? this.actions.startEdit(mine[mine.length - 1]) : false;
  }

  // What the message box of conversation `name` keeps and does.
  composerOn(name) {
    return {
      send: (text, replyTo) => this.send(name, text, replyTo),
      error: (text) => this.errors.set(name, text),
      draft: (text) => { if (text) this.drafts.set(name, text); else this.drafts.delete(name); },
      reply: () => this.replyTo.get(name) || null,
      setReply: (r) => { if (r) this.replyTo.set(name, r); else this.replyTo.delete(name); },
      editLast: () => this.editLast(),
      uploads: this.deps.uploads(),
    };
  }

  // The message box of the open conversation (dm-compose.js). `force`
  // false keeps what is being typed (only the error line and the reply
  // bar are redrawn).
  renderComposer(force = true, focus = false) {
    const el = this.deps.ui().composer;
    const name = this.open;
    const existing = el.querySelector('textarea[data-dm]');
    if (!force && existing && existing.dataset.dm === name) {
      const err = el.querySelector('.send-error');
      if (err) err.textContent = this.errors.get(name) || '';
      drawDmReply(el, this.replyTo.get(name) || null, this.composerOn(name));
      return;
    }
    renderDmComposer(el, {
      name,
      title: conversationTitle(name),
      limit: this.deps.limit(),
      draft: this.drafts.get(name) || '',
      error: this.errors.get(name) || '',
      reply: this.replyTo.get(name) || null,
      focus: focus && !this.deps.isPhone(),
    }, this.composerOn(name));
  }

  openNewDialog() {
    const me = this.deps.me();
    openNewDmDialog(this.deps.ui().dialog, { me: me.username, friends: this.deps.friendNames(), open: (name) => this.show(name) });
  }
}

// What message `m` says, in one line: its text, else the file it shares.
function said(m) {
  return m.text || (m.file ? `File: ${m.file.name}` : '');
}

function atBottom(t) {
  return t.scrollHeight - t.scrollTop - t.clientHeight < 60;
}
