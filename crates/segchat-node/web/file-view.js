// A shared file in the timeline, under its message's caption: an image
// as a preview (a click opens it whole in a new tab), shown by the
// thumbnail its message carries until it is here (at once, whatever its
// size; "Show full image" fetches one too large to come by itself), any
// other file as a card with its name, its size and a Download button. Files travel
// node to node: the node fetches images (up to 16 MiB) by itself as their
// message arrives (while it is not busy; the rest this asks for, a few at
// a time), other files when asked (POST /files/{hash}/fetch).
// While a file is on its way this asks the node where it stands every
// half second (GET /files/{hash}; there is no event for it) and shows a
// progress bar with the percent, the speed and the time left; once the
// file is here whole, the image shows, or the card offers to save it
// (content?download=1). The timeline is drawn anew on every event, so
// what is known of each file is kept here, by hash, and what changes
// between drawings is changed in place.

import { api, enc } from './api.js';
import { h, icon, announce } from './dom.js';
import { humanSize } from './format.js';
import { Meter, transferBar } from './files.js';

const POLL_MS = 500;
// Images this page has the node fetch at once, and how long it waits when
// the node is busy.
const AUTO_AT_ONCE = 3;
const BUSY_RETRY_MS = 2000;
// What a member's node fetches by itself (files/mod.rs AUTO_FETCH).
const AUTO_FETCH = 16 * 1024 * 1024;
// Served inline by the node (segchat_proto::files::safe_inline).
const INLINE = new Set(['image/png', 'image/jpeg', 'image/jpg', 'image/gif', 'image/webp', 'image/avif']);
// Preview elements kept across drawings (so an image does not load again).
const KEEP_IMAGES = 300;

export const isImage = (f) => INLINE.has(String(f.mime || '').split(';')[0].trim().toLowerCase());
// An image shown as a preview, fetched without being asked.
const previewed = (f) => isImage(f) && f.size <= AUTO_FETCH;

// What the node is told a file was shared in: the channel, or null for a
// direct message's (dm-messages.js `asChannelRow` marks those).
const scopeOf = (m) => (m.dm ? null : m.channel);

const contentUrl = (hash, download = false) => `/api/v1/files/${enc(hash)}/content${download ? '?download=1' : ''}`;

export class FileView {
  constructor() {
    this.status = new Map(); // hash → the node's status; {state: 'none'} when it has none
    this.asking = new Set(); // hashes with a request out
    this.timers = new Map(); // hash → the next poll
    this.meters = new Map(); // hash → Meter, while fetching
    this.wanted = new Set(); // hashes the user asked to download
    this.msgs = new Map(); // message id → its row, as last drawn
    this.imgs = new Map(); // message id → its preview's <img>
    this.bars = new WeakMap(); // a drawn file → how to move its progress bar
    this.queue = []; // images to preview waiting to be fetched: { f, channel }
  }

  // The file message `m` shares, drawn (null when none).
  render(m) {
    const f = m.file;
    if (!f || m.deleted) return null;
    this.msgs.set(m.id, m);
    const st = this.look(f, scopeOf(m));
    const preview = previewed(f) || (isImage(f) && (st.state === 'complete' || !!f.thumb));
    return preview ? this.image(m, st) : this.card(m, st);
  }

  // ------------------------------------------------------------ asking the node

  // What is known of `f`; the first time, asks the node.
  look(f, channel) {
    let st = this.status.get(f.hash);
    if (!st) {
      st = { state: 'unknown' };
      this.status.set(f.hash, st);
      this.ask(f, channel);
    }
    return st;
  }

  // Where the node stands with `f`. An image to preview that it has none
  // of yet waits its turn to be fetched.
  async ask(f, channel) {
    if (this.asking.has(f.hash)) return;
    this.asking.add(f.hash);
    let st = null;
    try {
      st = await api('GET', `/files/${enc(f.hash)}`);
    } catch (e) {
      if (e.status !== 404) {
        // The node is away, say: ask again when the file is drawn next.
        this.asking.delete(f.hash);
        this.status.delete(f.hash);
        return;
      }
    }
    this.asking.delete(f.hash);
    if (st) this.set(f, st);
    else if (this.wanted.has(f.hash)) this.fetch(f, channel);
    else if (previewed(f)) this.enqueue(f, channel);
    else this.set(f, { state: 'none' });
  }

  // Images to preview are fetched a few at a time (the node refuses more
  // than 16 fetches at once, 429), in the order they are drawn.
  enqueue(f, channel) {
    if (!this.queue.some((q) => q.f.hash === f.hash)) this.queue.push({ f, channel });
    this.set(f, { state: 'queued' });
    this.pump();
  }

  pump() {
    const running = () => [...this.status.values()].filter((st) => st.state === 'fetching' && st.auto).length;
    while (this.queue.length && running() < AUTO_AT_ONCE) {
      const { f, channel } = this.queue.shift();
      // Not shown any more: asked again when it is.
      if (!this.shown(f.hash)) { this.status.delete(f.hash); continue; }
      this.set(f, { state: 'fetching', bytes: 0, auto: true });
      this.fetch(f, channel, true);
    }
  }

  // Starts (or resumes) fetching `f`, shared in `channel`; `auto`: an
  // image to preview, which waits and tries again if the node is busy.
  async fetch(f, channel, auto = false) {
    this.asking.add(f.hash);
    let st;
    try {
      st = await api('POST', `/files/${enc(f.hash)}/fetch`, { channel });
    } catch (e) {
      this.asking.delete(f.hash);
      if (e.status === 0) {
        // The node is away: ask again when the file is drawn next.
        this.status.delete(f.hash);
        return;
      }
      if (auto && e.status === 429) {
        this.set(f, { state: 'queued' });
        setTimeout(() => this.enqueue(f, channel), BUSY_RETRY_MS);
        return;
      }
      st = { state: 'failed', reason: e.reason, bytes: 0 };
    }
    this.asking.delete(f.hash);
    this.set(f, st);
  }

  // The user's Download: fetch it, showing the bar at once.
  download(m) {
    const f = m.file;
    this.wanted.add(f.hash);
    announce(`Downloading ${f.name}`);
    // It goes on from what the node holds (a download cancelled before).
    this.set(f, { state: 'fetching', bytes: this.held(f), size: f.size });
    this.fetch(f, scopeOf(m));
  }

  // The user's Cancel: the node stops fetching `f` (keeping what it
  // has, so Download goes on from there).
  async cancel(f) {
    this.wanted.delete(f.hash);
    try {
      await api('DELETE', `/files/${enc(f.hash)}/fetch`);
    } catch { /* it ended meanwhile: the next look says how */ }
    announce(`Download of ${f.name} cancelled`);
    // What it holds now is where it goes on from: the node says.
    let st = { state: 'failed', reason: 'cancelled', bytes: this.held(f) };
    try {
      const now = await api('GET', `/files/${enc(f.hash)}`);
      if (now.state !== 'fetching') st = now;
    } catch { /* the node is away: the next look says */ }
    this.set(f, st);
  }

  // The bytes of `f` the node said it held, last it was asked.
  held(f) {
    const st = this.status.get(f.hash);
    return (st && st.bytes) || 0;
  }

  // `st` is where the node now stands with `f`: redraw what changed.
  set(f, st) {
    const old = this.status.get(f.hash);
    // (An image this page had fetched stays counted as such till done.)
    const auto = !!old && !!old.auto && old.state === 'fetching';
    if (auto && st.state === 'fetching') st = { ...st, auto };
    this.status.set(f.hash, st);
    if (auto && st.state !== 'fetching') this.pump();
    if (st.state === 'fetching') {
      let meter = this.meters.get(f.hash);
      if (!meter) { meter = new Meter(f.size); this.meters.set(f.hash, meter); }
      meter.add(Math.min(st.bytes || 0, f.size));
      this.poll(f);
    } else {
      this.meters.delete(f.hash);
      clearTimeout(this.timers.get(f.hash));
      this.timers.delete(f.hash);
    }
    const moved = !old || old.state !== st.state;
    const done = moved && this.wanted.has(f.hash) && (st.state === 'complete' || st.state === 'failed');
    if (done) {
      this.wanted.delete(f.hash);
      announce(st.state === 'complete' ? `${f.name} is here: Save it` : `Could not download ${f.name}: ${st.reason || 'it failed'}`);
    }
    this.changed(f.hash, moved, done);
  }

  // Asks again in `ms` (longer after a failed ask).
  poll(f, ms = POLL_MS) {
    if (this.timers.has(f.hash)) return;
    this.timers.set(f.hash, setTimeout(async () => {
      this.timers.delete(f.hash);
      // Not shown any more: forget it; it is asked again when shown.
      if (!this.shown(f.hash)) {
        this.status.delete(f.hash);
        this.meters.delete(f.hash);
        return;
      }
      try {
        this.set(f, await api('GET', `/files/${enc(f.hash)}`));
      } catch (e) {
        // A 404 while the fetch is being asked for: not started yet.
        if (e.status === 404 && !this.asking.has(f.hash)) this.set(f, { state: 'none' });
        else this.poll(f, e.status === 404 ? POLL_MS : POLL_MS * 4);
      }
    }, ms));
  }

  shown(hash) {
    return !!document.querySelector(`.file[data-hash="${CSS.escape(hash)}"]`);
  }

  // Every drawing of file `hash`: its bar moved, or (`moved`: its state
  // changed) drawn again, focus kept; `done`: a download the user asked
  // for ended, so focus goes on to what is there now.
  changed(hash, moved, done = false) {
    for (const el of document.querySelectorAll(`.file[data-hash="${CSS.escape(hash)}"]`)) {
      if (!moved) {
        const update = this.bars.get(el);
        const meter = this.meters.get(hash);
        if (update && meter) update(meter);
        continue;
      }
      const m = this.msgs.get(el.dataset.msg);
      const next = m && this.render(m);
      if (!next) continue;
      const article = el.closest('article.msg');
      const had = el.contains(document.activeElement) || (done && document.activeElement === article);
      // The timeline's one tab stop stays one (timeline-keys.js).
      if (article) for (const c of next.querySelectorAll('a[href], button')) c.tabIndex = -1;
      // At its newest message, the timeline stays there.
      const t = el.closest('.timeline');
      const stick = t && t.scrollHeight - t.scrollTop - t.clientHeight < 60;
      el.replaceWith(next);
      if (stick) t.scrollTop = t.scrollHeight;
      if (had) {
        const target = next.querySelector('.file-action') || article;
        if (target) target.focus({ preventScroll: true });
      }
    }
  }

  // ------------------------------------------------------------ drawing

  frame(m, cls, ...children) {
    return h('div', { class: `file ${cls}`, dataset: { hash: m.file.hash, msg: m.id } }, ...children);
  }

  // A link that saves the file (once it is here whole).
  saveLink(f, cls = 'btn small') {
    return h('a', {
      class: `${cls} file-action file-save`, href: contentUrl(f.hash, true), download: f.name,
      'aria-label': `Save ${f.name} (${humanSize(f.size)})`, title: 'Save to your computer',
    }, icon('download'), h('span', { class: 'file-save-word' }, 'Save'));
  }

  // Progress while the node fetches `f`, with its bar kept movable.
  progress(el, f, label) {
    const meter = this.meters.get(f.hash) || new Meter(f.size);
    const bar = transferBar(`${label} ${f.name}`, meter, 'file-xfer');
    this.bars.set(el, bar.update);
    return bar.el;
  }

  // A file that is not an image to preview.
  card(m, st) {
    const f = m.file;
    const el = this.frame(m, `file-card ${st.state}`);
    let action = null;
    let below = null;
    // A download the user stopped goes on from what is here: no error.
    const failed = st.state === 'failed' && st.reason !== 'cancelled';
    if (st.state === 'complete') action = this.saveLink(f);
    else if (st.state === 'fetching') {
      below = this.progress(el, f, 'Downloading');
      action = h('button', {
        type: 'button', class: 'icon-btn small file-action file-cancel', 'aria-label': `Cancel the download of ${f.name}`,
        title: 'Cancel download', onclick: () => this.cancel(f),
      }, icon('close'));
    } else {
      if (failed) below = h('p', { class: 'file-error' }, icon('warn'), `Could not download: ${st.reason || 'it failed'}`);
      action = h('button', {
        type: 'button', class: 'btn small file-action file-download', 'aria-label': `${failed ? 'Try again to download' : 'Download'} ${f.name} (${humanSize(f.size)})`,
        onclick: () => this.download(m),
      }, icon('download'), failed ? 'Try again' : 'Download');
    }
    el.append(h('div', { class: 'file-row' },
      h('span', { class: 'file-icon', 'aria-hidden': 'true' }, icon('file')),
      h('div', { class: 'file-text' },
        h('span', { class: 'file-name', title: f.name }, f.name),
        h('span', { class: 'file-size' }, humanSize(f.size))),
      action));
    if (below) el.append(below);
    return el;
  }

  // An image: its preview once here, else its thumbnail (the small JPEG
  // its message carries) or a placeholder, with progress.
  image(m, st) {
    const f = m.file;
    if (st.state !== 'complete' && f.thumb) return this.thumbnail(m, st);
    if (st.state !== 'complete') {
      const el = this.frame(m, `file-image pending ${st.state}`);
      const failed = st.state === 'failed';
      el.append(h('div', { class: 'file-placeholder' },
        icon(failed ? 'warn' : 'file'),
        h('span', { class: 'file-name' }, f.name),
        h('span', { class: 'file-size' }, humanSize(f.size)),
        failed ? h('p', { class: 'file-error' }, `Could not load the image: ${st.reason || 'it failed'}`) : null,
        failed ? h('button', { type: 'button', class: 'btn small file-action', onclick: () => this.download(m) }, 'Try again') : null,
        st.state === 'fetching' ? this.progress(el, f, 'Loading image') : null,
        st.state !== 'fetching' && !failed ? h('span', { class: 'file-wait' }, 'Loading image…') : null));
      return el;
    }
    const el = this.frame(m, 'file-image');
    el.append(
      h('a', {
        class: 'file-open', href: contentUrl(f.hash), target: '_blank', rel: 'noopener noreferrer', title: 'Open the full image in a new tab',
      }, this.img(m), h('span', { class: 'visually-hidden' }, ' (open the full image in a new tab)')),
      h('div', { class: 'file-under' },
        h('span', { class: 'file-name', title: f.name }, f.name),
        h('span', { class: 'file-size' }, humanSize(f.size)),
        this.saveLink(f, 'file-save-small')));
    return el;
  }

  // An image not here yet, shown by its thumbnail: fetched by itself
  // when small (with progress), else on "Show full image".
  thumbnail(m, st) {
    const f = m.file;
    const failed = st.state === 'failed' && st.reason !== 'cancelled';
    const fetching = st.state === 'fetching';
    const el = this.frame(m, `file-image pending ${st.state}`);
    const show = h('button', {
      type: 'button', class: 'btn small file-action', onclick: () => this.download(m),
      'aria-label': `Show the full image ${f.name} (${humanSize(f.size)})`,
    }, icon('download'), failed ? 'Try again' : 'Show full image');
    el.append(...[
      h('img', {
        class: 'file-thumb', alt: `${f.name} (preview)`, decoding: 'async', src: `data:image/jpeg;base64,${f.thumb}`,
        onload: (e) => this.loaded(e.target),
      }),
      h('div', { class: 'file-under' },
        h('span', { class: 'file-name', title: f.name }, f.name),
        h('span', { class: 'file-size' }, humanSize(f.size)),
        fetching ? h('button', {
          type: 'button', class: 'icon-btn small file-action file-cancel', 'aria-label': `Cancel loading ${f.name}`,
          title: 'Cancel', onclick: () => this.cancel(f),
        }, icon('close')) : show),
      failed ? h('p', { class: 'file-error' }, `Could not load the image: ${st.reason || 'it failed'}`) : null,
      fetching ? this.progress(el, f, 'Loading image') : null,
    ].filter(Boolean));
    return el;
  }

  // The preview's <img>, the same one each drawing.
  img(m) {
    const f = m.file;
    let img = this.imgs.get(m.id);
    if (img && img.dataset.hash === f.hash) return img;
    // `crossorigin` before `src`: the request then names this page as its
    // Origin, which the node's guard takes in place of X-Segchat.
    img = h('img', {
      crossorigin: 'anonymous', class: 'file-img', alt: f.name, decoding: 'async', dataset: { hash: f.hash },
      src: contentUrl(f.hash),
    });
    img.addEventListener('load', () => this.loaded(img), { once: true });
    this.imgs.set(m.id, img);
    if (this.imgs.size > KEEP_IMAGES) this.imgs.delete(this.imgs.keys().next().value);
    return img;
  }

  // An image took its room: the timeline stays at the bottom if it was
  // there, and what was being read stays in view.
  loaded(img) {
    const t = img.closest('.timeline');
    if (!t) return;
    const grew = img.offsetHeight;
    if (t.scrollHeight - t.scrollTop - t.clientHeight - grew < 60) t.scrollTop = t.scrollHeight;
    else if (img.getBoundingClientRect().bottom <= t.getBoundingClientRect().top + 1) t.scrollTop += grew;
  }
}
