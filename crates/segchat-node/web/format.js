// Names, colours, times and words the UI shows.

const COLORS = ['#5865f2', '#eb459e', '#3ba55c', '#faa61a', '#ed4245', '#9b59b6', '#1abc9c', '#e67e22', '#3498db', '#e91e63'];

// A visitor's username is `visitor:Name#suffix`. Wherever a name is shown,
// a visitor's carries "(visitor)", so no visitor passes for a user.
export function displayName(username) {
  if (!username) return '';
  if (isVisitorName(username)) return `${bareName(username)} (visitor)`;
  return username;
}

// The name alone, for places that mark visitors another way (a tag).
export function bareName(username) {
  if (!username) return '';
  if (isVisitorName(username)) return username.slice(8).replace(/#[^#]*$/, '');
  return username;
}

export function isVisitorName(username) {
  return typeof username === 'string' && username.startsWith('visitor:');
}

export function colorOf(name) {
  let h = 0;
  for (const ch of name || '') h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

export function initials(name) {
  const n = displayName(name).trim();
  return (n[0] || '?').toUpperCase();
}

const pad = (n) => String(n).padStart(2, '0');

export function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

export function dayLabel(ms, now = Date.now()) {
  const d = new Date(ms);
  const today = new Date(now);
  const yesterday = new Date(now - 86400000);
  if (sameDay(d, today)) return 'Today';
  if (sameDay(d, yesterday)) return 'Yesterday';
  return d.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

// "Today at 14:03", "Yesterday at 09:12", "21/11/2026 14:03".
export function stamp(ms, now = Date.now()) {
  const label = dayLabel(ms, now);
  if (label === 'Today' || label === 'Yesterday') return `${label} at ${clock(ms)}`;
  return `${new Date(ms).toLocaleDateString()} ${clock(ms)}`;
}

export function fullTime(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'medium' });
}

// "just now", "5 minutes ago", …
export function relative(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 24) return `${hrs} hour${hrs === 1 ? '' : 's'} ago`;
  const d = Math.round(hrs / 24);
  return `${d} day${d === 1 ? '' : 's'} ago`;
}

export const PRESENCE_LABEL = {
  online: 'Online',
  idle: 'Idle',
  invisible: 'Invisible',
  offline: 'Offline',
};

export const STATE_LABEL = {
  pending: 'Sending…',
  stored: 'Stored by the host',
  backed_up: 'Backed up on the server',
  refused: 'Not delivered',
};

// The name a channel is shown by: its title, which its owner may change
// (the name itself, signed into every message, never changes).
export function channelTitle(c, name = '') {
  return (c && (c.title || c.name)) || name;
}

// A channel in a sentence: #name, or “Title” (#name) once it has a title.
export function channelRef(c, name = '') {
  const n = (c && c.name) || name;
  const t = channelTitle(c, name);
  return t === n ? `#${n}` : `“${t}” (#${n})`;
}

export const VISIBILITY_LABEL = {
  public: 'Public',
  members_only: 'Members only',
  private: 'Private',
};

export const VIA_LABEL = {
  hosting: 'You host this channel',
  host: 'Connected to the host (P2P)',
  server: "Host offline — reading the server's backup",
  offline: 'Offline — local history only',
};

// A size in bytes as people read it: "980 bytes", "1.4 KB", "30 MB",
// "2.1 GB" (powers of 1024, as file managers show them).
export function humanSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} byte${n === 1 ? '' : 's'}`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

// A time left, roughly: "8 s", "3 min", "1 h 20 min".
export function humanDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// What a message says, on one line: its body, or (a file shared with no
// caption) the file's name.
export function textOf(m) {
  if (!m) return '';
  if (m.body || !m.file) return m.body || '';
  return `File: ${m.file.name}`;
}
