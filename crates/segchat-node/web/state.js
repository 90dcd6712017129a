// The page's state, shared by app.js and the modules it wires together:
// `s` (who I am, the channels, per channel its messages, members, unread
// counts, drafts and reply, what is open), the page's elements (`ui`,
// null until signed in) and the stream area, the phone-width query, and
// small questions about a channel (is it mine, can I read or write it).
// Only app.js and events.js replace `ui`, only app.js `streams`; other
// modules read them as live bindings.

import { notificationState } from './mentions.js';

export const phone = window.matchMedia('(max-width: 768px)');

export const s = {
  node: null,
  me: null,
  channels: [],
  cached: false,
  unread: {},
  // Per channel, how many unread messages mention me (GET /unread).
  mentions: {},
  // Per channel, the message the composer replies to.
  replyTo: new Map(),
  // Browser notifications for mentions: 'default' until asked.
  notify: notificationState(),
  // Per channel with unread messages, the id of the first (GET /unread).
  firstUnread: {},
  links: {},
  current: null,
  serverConnected: false,
  // Whether this tab's own node answers (its event socket is open).
  nodeUp: true,
  chans: new Map(),
  members: new Map(),
  openDetails: new Set(),
  drafts: new Map(),
  statusMenuOpen: false,
  sidebarOpen: false,
  panel: phone.matches ? null : 'members',
  sendError: '',
  signIn: null,
};

// The page's elements (enterApp in app.js), or null on the sign-in screen.
export let ui = null;
export function setUi(next) {
  ui = next;
}

// The stream area (streams.js), made with the page's elements.
export let streams = null;
export function setStreams(next) {
  streams = next;
}

// How this node reaches each channel (`s.links`) comes from two sources:
// `channel_link` events and the `via` in API answers. An answer was read
// when the node served its request and can arrive after newer news (the
// host goes away just as a channel opens; a resync's answer overtakes an
// older one), so every piece of news gets a tick — an event when it
// arrives, an answer when its request left (`linksMark()`) — and an
// answer (`applyLinks`) counts only for channels that heard nothing newer.
let linkClock = 0;
const linkKnownAt = new Map();
export function linksMark() {
  linkClock += 1;
  return linkClock;
}
export function noteLinkEvent(channel, via) {
  linkKnownAt.set(channel, linksMark());
  s.links[channel] = via;
}
export function applyLinks(links, mark) {
  for (const [channel, via] of Object.entries(links || {})) {
    if (linkKnownAt.get(channel) > mark) continue;
    linkKnownAt.set(channel, mark);
    s.links[channel] = via;
  }
}

export function chan(name) {
  if (!s.chans.has(name)) {
    s.chans.set(name, { byId: new Map(), gaps: [], nextBefore: null, loadedAll: false, loading: false, initialized: false });
  }
  return s.chans.get(name);
}

export function channelInfo(name) {
  return s.channels.find((c) => c.name === name) || null;
}

export function isMine(c) {
  return c && s.me.kind === 'user' && c.owner === s.me.username;
}

export function canRead(c) {
  return c && (isMine(c) || c.my_role || s.me.kind === 'visitor');
}

export function canWrite(c) {
  return c && s.me.kind === 'user' && (isMine(c) || c.my_role);
}

// Why this user cannot go live (or write) in a channel.
export function writeReason(c) {
  if (!c) return 'Pick a channel first.';
  if (s.me.kind === 'visitor') return 'Visitors cannot go live; register an account to do that.';
  if (!canWrite(c)) return `Join #${c.name} to go live in it.`;
  return '';
}

// `fn(key)`, called once `ms` after the last call for `key`.
export function debounce(fn, ms) {
  const timers = new Map();
  const call = (key = '') => {
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => { timers.delete(key); fn(key); }, ms));
  };
  // Makes a pending call for `key` now (none pending: nothing).
  call.flush = (key = '') => {
    if (!timers.has(key)) return;
    clearTimeout(timers.get(key));
    timers.delete(key);
    fn(key);
  };
  return call;
}
