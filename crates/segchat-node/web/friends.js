// The friends panel: friends online and all (each with "Message", which
// opens a direct message), requests both ways (accept, decline, cancel),
// blocked users, and a form to ask someone by name.
// What the server says (`GET /friends`, each answer, `relation` events)
// is the only truth here: an action's answer replaces the row it names.

import { api, enc } from './api.js';
import { h, clear, icon, announce } from './dom.js';
import { displayName, PRESENCE_LABEL } from './format.js';
import { avatar } from './sidebar.js';

const TABS = [
  ['online', 'Online'],
  ['all', 'All'],
  ['pending', 'Pending'],
  ['blocked', 'Blocked'],
  ['add', 'Add friend'],
];

const here = (p) => p === 'online' || p === 'idle';
const same = (a, b) => a.toLowerCase() === b.toLowerCase();

export class Friends {
  // deps: changed() after the list changed (redraw), close() the panel,
  // message(username) opens a direct message.
  constructor(deps) {
    this.deps = deps;
    this.reset();
  }

  reset() {
    this.list = [];
    this.tab = 'online';
    this.result = null;
    // What is typed in "Add friend" (kept across redraws).
    this.draft = '';
  }

  async load() {
    try {
      this.list = (await api('GET', '/friends')).relations;
    } catch { /* a visitor, or the server is away: nothing to show */ }
    this.deps.changed();
  }

  // Requests waiting for my answer (the sidebar's badge).
  incoming() {
    return this.list.filter((r) => r.kind === 'incoming').length;
  }

  kindOf(username) {
    const r = this.list.find((x) => same(x.username, username));
    return r ? r.kind : null;
  }

  // A relation as the server now has it (an answer or an event); kind
  // null takes the row away.
  apply(r) {
    this.list = this.list.filter((x) => !same(x.username, r.username));
    if (r.kind) this.list.push(r);
    this.list.sort((a, b) => a.username.localeCompare(b.username));
    this.deps.changed();
  }

  // A presence event: a friend's new presence.
  presence(username, status) {
    const r = this.list.find((x) => x.kind === 'friend' && x.username === username);
    if (r) { r.presence = status; this.deps.changed(); }
  }

  async act(method, path, said) {
    try {
      const r = await api(method, path);
      this.apply(r);
      this.result = { ok: true, text: said(r) };
    } catch (e) {
      this.result = { ok: false, text: e.reason };
    }
    announce(this.result.text);
    this.deps.changed();
  }

  ask(name) {
    return this.act('POST', `/friends/${enc(name)}`, (r) => (r.kind === 'friend'
      ? `You and ${displayName(r.username)} are friends now.`
      : `Friend request sent to ${displayName(r.username)}.`));
  }

  render(panel) {
    panel.setAttribute('aria-label', 'Friends');
    const pending = this.incoming();
    const closeBtn = h('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Close friends', onclick: () => this.deps.close() }, icon('close'));
    const tabs = h('div', { class: 'friend-tabs', role: 'tablist', 'aria-label': 'Show', onkeydown: (e) => this.tabKeys(e) },
      TABS.map(([id, label]) => h('button', {
        type: 'button', role: 'tab', class: 'tab', id: `friends-tab-${id}`,
        'aria-selected': String(this.tab === id), 'aria-controls': 'friends-body',
        tabindex: this.tab === id ? '0' : '-1',
        onclick: () => { this.tab = id; this.result = null; this.deps.changed(); },
      }, label, id === 'pending' && pending ? [' ', h('span', { class: 'badge' }, String(pending))] : null)));
    const body = h('div', { class: 'panel-body', id: 'friends-body', role: 'tabpanel', 'aria-labelledby': `friends-tab-${this.tab}` },
      this.tab === 'add' ? this.addForm() : this.rows());
    clear(panel, h('header', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, 'Friends'), closeBtn), tabs, body);
  }

  tabKeys(e) {
    const focused = TABS.findIndex(([id]) => document.activeElement && document.activeElement.id === `friends-tab-${id}`);
    const i = focused >= 0 ? focused : TABS.findIndex(([id]) => id === this.tab);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    e.preventDefault();
    this.tab = TABS[(i + step + TABS.length) % TABS.length][0];
    this.deps.changed();
    const t = document.getElementById(`friends-tab-${this.tab}`);
    if (t) t.focus();
  }

  rows() {
    const friends = this.list.filter((r) => r.kind === 'friend');
    const pick = {
      online: [friends.filter((r) => here(r.presence)), 'No friend is online right now.'],
      all: [friends, 'No friends yet. Add one by their username.'],
      pending: [this.list.filter((r) => r.kind === 'incoming' || r.kind === 'outgoing'), 'No friend requests.'],
      blocked: [this.list.filter((r) => r.kind === 'blocked'), 'You have blocked nobody.'],
    }[this.tab];
    const [list, empty] = pick;
    const title = { online: 'Online', all: 'All friends', pending: 'Pending', blocked: 'Blocked' }[this.tab];
    return h('section', { class: 'member-group' },
      h('h3', {}, `${title} — ${list.length}`),
      list.length ? h('ul', { role: 'list', id: 'friend-list' }, list.map((r) => this.row(r))) : h('p', { class: 'empty-line' }, empty),
      this.resultLine());
  }

  row(r) {
    const name = displayName(r.username);
    const u = enc(r.username);
    const button = (label, what, run, cls = 'ghost') => h('button', {
      type: 'button', class: `btn ${cls} small`, 'aria-label': `${label} ${name}`, dataset: { action: what }, onclick: run,
    }, label);
    const status = {
      friend: PRESENCE_LABEL[r.presence] || 'Offline',
      incoming: 'Wants to be your friend',
      outgoing: 'Request sent',
      blocked: 'Blocked',
    }[r.kind];
    const actions = {
      friend: [
        h('button', {
          type: 'button', class: 'icon-btn small', 'aria-label': `Message ${name}`, title: `Message ${name}`,
          dataset: { action: 'message' }, onclick: () => this.deps.message(r.username),
        }, icon('message')),
        button('Remove', 'remove', () => this.act('DELETE', `/friends/${u}`, () => `${name} is no longer your friend.`)),
        button('Block', 'block', () => this.act('PUT', `/blocks/${u}`, () => `Blocked ${name}.`)),
      ],
      incoming: [
        button('Accept', 'accept', () => this.act('POST', `/friends/${u}/accept`, () => `You and ${name} are friends now.`), 'primary'),
        button('Decline', 'decline', () => this.act('DELETE', `/friends/${u}`, () => `Declined ${name}'s request.`)),
      ],
      outgoing: [button('Cancel', 'cancel', () => this.act('DELETE', `/friends/${u}`, () => `Cancelled your request to ${name}.`))],
      blocked: [button('Unblock', 'unblock', () => this.act('DELETE', `/blocks/${u}`, () => `Unblocked ${name}.`))],
    }[r.kind];
    const presence = r.kind === 'friend' ? (r.presence || 'offline') : 'offline';
    return h('li', { class: `member friend ${presence}`, dataset: { username: r.username, kind: r.kind } },
      avatar(r.username, r.kind === 'friend' ? presence : null),
      h('span', { class: 'friend-who' },
        h('span', { class: 'member-name' }, name),
        h('span', { class: 'member-status' }, status)),
      h('span', { class: 'friend-actions' }, actions));
  }

  addForm() {
    const input = h('input', {
      id: 'friend-name', name: 'username', autocomplete: 'off', spellcheck: 'false', required: true,
      minlength: '3', maxlength: '32', placeholder: 'username', value: this.draft,
      oninput: (e) => { this.draft = e.target.value; },
    });
    const form = h('form', {
      class: 'auth-form friend-add',
      onsubmit: (e) => {
        e.preventDefault();
        const name = input.value.trim();
        if (!name) return;
        this.ask(name).then(() => {
          if (this.result && this.result.ok) { this.draft = ''; this.deps.changed(); }
          const again = document.getElementById('friend-name');
          if (again) again.focus();
        });
      },
    },
    h('div', { class: 'field' },
      h('label', { for: 'friend-name' }, 'Username'),
      input,
      h('p', { class: 'hint' }, 'Friends see each other online without sharing a channel.')),
    h('button', { type: 'submit', class: 'btn primary', id: 'friend-send' }, 'Send friend request'),
    this.resultLine());
    return form;
  }

  resultLine() {
    const r = this.result;
    if (!r) return null;
    return r.ok
      ? h('p', { class: 'hint friend-result', role: 'status' }, r.text)
      : h('p', { class: 'form-error friend-result', role: 'alert' }, r.text);
  }
}
